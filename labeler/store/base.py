"""What the run store's table groups share: a connection, its group commit, transactions and meta facts."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

from labeler.store.db import GroupCommit


class Tables:
    """A connection to one run's database; RunStore and its table groups are built on it."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.writes = GroupCommit(conn)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        self.writes.flush()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
