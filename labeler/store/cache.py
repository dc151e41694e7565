"""The response cache shared by all runs under one runs root (`<runs root>/cache.sqlite`).

Several runs may use it at once, from several processes: puts are buffered and committed in short
transactions (GroupCommit), so no process holds the write lock across an await, and one that has
to wait for another waits for one short commit. A put is visible to this process's `get` at once.
"""

from __future__ import annotations

import time
from pathlib import Path

from labeler.store.db import GroupCommit, connect, sqlite_errors
from labeler.types import Completion


class Cache:
    """Successful completions keyed by Request.cache_key(). Failed answers are never put here."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.conn = connect(path)
        with sqlite_errors(path):
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, completion TEXT NOT NULL, created REAL)"
            )
        self._unflushed: dict[str, str] = {}  # puts not committed yet, so a get sees them
        self.writes = GroupCommit(self.conn, on_commit=self._unflushed.clear)

    def get(self, key: str) -> Completion | None:
        blob = self._unflushed.get(key)
        if blob is None:
            with sqlite_errors(self.path):
                row = self.conn.execute("SELECT completion FROM cache WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            blob = row[0]
        return Completion.from_json(blob)

    def get_many(self, keys: list[str]) -> dict[str, Completion]:
        """The cached completions of those `keys` that have one: one query for a K-item request's items."""
        found = {k: self._unflushed[k] for k in keys if k in self._unflushed}
        rest = [k for k in keys if k not in found]
        if rest:
            marks = ",".join("?" * len(rest))
            with sqlite_errors(self.path):
                rows = self.conn.execute(f"SELECT key, completion FROM cache WHERE key IN ({marks})", rest).fetchall()
            found.update({str(r[0]): r[1] for r in rows})
        return {k: Completion.from_json(blob) for k, blob in found.items()}

    def put(self, key: str, completion: Completion) -> None:
        blob = completion.to_json()
        self._unflushed[key] = blob
        sql = "INSERT OR REPLACE INTO cache (key, completion, created) VALUES (?, ?, ?)"
        self.writes.execute(sql, (key, blob, time.time()))

    def flush(self) -> None:
        self.writes.flush()

    def close(self) -> None:
        try:
            self.writes.flush()
        finally:
            self.conn.close()
