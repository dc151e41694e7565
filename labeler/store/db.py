"""SQLite plumbing shared by the run store and the cache: connections (WAL), group commit, migrations.

Every sqlite3.OperationalError / DatabaseError that reaches labeler through here becomes a one-line
RunStoreError naming the file (`sqlite_errors`), never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from labeler.errors import RunStoreError

DatabaseError = sqlite3.Error  # what the CLI catches last, so no SQLite error reaches a user as a traceback


@contextlib.contextmanager
def sqlite_errors(path: Path | str) -> Iterator[None]:
    """Turn SQLite's operational errors (locked, busy, disk full, not a database) into RunStoreError."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        why = str(exc)
        if "locked" in why or "busy" in why:
            fix = "another process holds it too long; let it finish (or stop it) and run the command again"
        else:
            fix = "check the disk and the file's permissions"
        raise RunStoreError(f"{path}: {why}; {fix}") from None
    except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed"
        raise RunStoreError(f"{path}: {exc}; the file is damaged: move it away (a cache can be deleted)") from None


def connect(path: Path) -> sqlite3.Connection:
    with sqlite_errors(path):
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash; fsync at checkpoints
        conn.execute("PRAGMA busy_timeout=10000")
    conn.row_factory = sqlite3.Row
    return conn


def _db_path(conn: sqlite3.Connection) -> str:
    try:
        row = conn.execute("PRAGMA database_list").fetchone()
        return str(row[2]) if row and row[2] else "database"
    except sqlite3.Error:
        return "database"


class GroupCommit:
    """Writes to one connection, buffered in memory and committed together in one short transaction.

    Inside a running event loop a write is only buffered. The buffer is written (executemany, one
    `BEGIN IMMEDIATE ... COMMIT`) once its oldest write is `interval` seconds old — checked by a timer
    and at every write, so a loop too busy to run the timer on time still commits at its next write —
    or once it holds `max_rows` writes, or on flush(). No transaction is ever held open across an
    await: another process writing the same file (two runs share cache.sqlite) waits for one short
    commit at most, not for a 20 ms window. Committing every answer alone cost more than parsing it,
    hence the grouping; a process killed mid-run loses at most the buffered writes, which a resume
    asks for again. Outside an event loop every write commits at once.

    `delays` keeps the last commit delays (seconds from the oldest buffered write to its commit) and
    `held` how long each commit held the write lock, to measure both. `on_commit` is called after
    each commit (the cache forgets its unflushed rows). An error of a timer-driven commit is kept and
    raised to the next write or flush."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        interval: float = 0.02,
        *,
        max_rows: int = 256,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.conn = conn
        self.interval = interval
        self.max_rows = max_rows
        self.on_commit = on_commit
        self.path = _db_path(conn)
        self.delays: deque[float] = deque(maxlen=10_000)
        self.held: deque[float] = deque(maxlen=10_000)
        self._rows: list[tuple[str, tuple[Any, ...]]] = []
        self._first = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._error: RunStoreError | None = None

    @property
    def pending(self) -> int:
        """Writes buffered and not yet committed."""
        return len(self._rows)

    def execute(self, sql: str, params: tuple[Any, ...]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or self.interval <= 0:
            with sqlite_errors(self.path):
                self.conn.execute(sql, params)
            return
        now = time.monotonic()
        if not self._rows:
            self._first = now
        self._rows.append((sql, params))
        if self._error is not None or len(self._rows) >= self.max_rows or now - self._first >= self.interval:
            self.flush()
        elif self._handle is None:
            self._handle = loop.call_later(self.interval, self._on_timer)

    def _on_timer(self) -> None:
        self._handle = None
        try:
            self.flush()
        except RunStoreError as exc:  # a loop callback cannot raise to anyone: keep it for the next writer
            self._error = exc

    def flush(self) -> None:
        """Commit what is buffered now. Raises RunStoreError if SQLite cannot (the rows stay buffered)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._error = None
        if not self._rows:
            return
        rows, first = self._rows, self._first
        start = time.monotonic()
        with sqlite_errors(self.path):
            own = not self.conn.in_transaction  # else join the caller's transaction, which it commits
            if own:
                self.conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, group in itertools.groupby(rows, key=lambda r: r[0]):
                    self.conn.executemany(sql, [params for _, params in group])
                if own:
                    self.conn.execute("COMMIT")
            except BaseException:
                if own and self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
        self._rows = []
        now = time.monotonic()
        self.delays.append(now - first)
        self.held.append(now - start)
        if self.on_commit is not None:
            self.on_commit()


def migrate(conn: sqlite3.Connection, migrations: list[str]) -> None:
    with sqlite_errors(_db_path(conn)):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for i, script in enumerate(migrations[version:], start=version + 1):
            conn.executescript(f"BEGIN; {script}; PRAGMA user_version = {i}; COMMIT;")
