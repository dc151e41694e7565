"""The response cache shared by all runs under one runs root (`<runs root>/cache.sqlite`)."""

from __future__ import annotations

import time
from pathlib import Path

from labeler.store.db import GroupCommit, connect
from labeler.types import Completion


class Cache:
    """Successful completions keyed by Request.cache_key(). Failed answers are never put here."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.conn = connect(path)
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, completion TEXT NOT NULL, created REAL)"
        )
        self.writes = GroupCommit(self.conn)

    def get(self, key: str) -> Completion | None:
        row = self.conn.execute("SELECT completion FROM cache WHERE key = ?", (key,)).fetchone()
        return None if row is None else Completion.from_json(row[0])

    def put(self, key: str, completion: Completion) -> None:
        self.writes.execute(
            "INSERT OR REPLACE INTO cache (key, completion, created) VALUES (?, ?, ?)",
            (key, completion.to_json(), time.time()),
        )

    def flush(self) -> None:
        self.writes.flush()

    def close(self) -> None:
        self.writes.flush()
        self.conn.close()
