"""SQLite plumbing shared by the run store and the cache: connections (WAL), group commit, migrations."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash; fsync at checkpoints
    conn.execute("PRAGMA busy_timeout=10000")
    conn.row_factory = sqlite3.Row
    return conn


class GroupCommit:
    """Writes to one connection, committed together at most `interval` seconds after the first of them.

    Inside a running event loop, a write opens a transaction and schedules its commit; writes that come
    in the meantime join it. Committing every answer alone cost more than parsing it (two commits an
    item: cache and result), so a process killed mid-run loses at most the last `interval` of answers,
    which a resume asks for again. Outside an event loop every write commits at once."""

    def __init__(self, conn: sqlite3.Connection, interval: float = 0.02) -> None:
        self.conn = conn
        self.interval = interval
        self._handle: asyncio.TimerHandle | None = None

    def execute(self, sql: str, params: tuple[Any, ...]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or self.interval <= 0:
            self.conn.execute(sql, params)
            return
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN")
        self.conn.execute(sql, params)
        if self._handle is None:
            self._handle = loop.call_later(self.interval, self.flush)

    def flush(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")


def migrate(conn: sqlite3.Connection, migrations: list[str]) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for i, script in enumerate(migrations[version:], start=version + 1):
        conn.executescript(f"BEGIN; {script}; PRAGMA user_version = {i}; COMMIT;")
