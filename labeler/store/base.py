"""What the run store's table groups share: a connection, its group commit, transactions and meta facts."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from labeler.errors import RunStoreError
from labeler.store.db import GroupCommit
from labeler.types import Item


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The run's manifest.json: the one place it is read. A file that is not a JSON object (cut short,
    edited by hand, overwritten) is a RunStoreError naming it and the fix, not a traceback."""
    path = run_dir / "manifest.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        why = "is not a run directory (no manifest.json); pass a runs/<run-id> folder"
        raise RunStoreError(f"{run_dir} {why}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        why = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise RunStoreError(
            f"{path} is damaged (not valid JSON: {why}); restore it from a backup or start a new run"
        ) from None
    if not isinstance(data, dict):
        raise RunStoreError(f"{path} is damaged (not a JSON object); restore it from a backup or start a new run")
    return data


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

    def items_where(self, condition: str, params: Sequence[object], *, batch: int = 1000) -> Iterator[Item]:
        """The items (table alias `i`) meeting the SQL `condition` with its `params`, in input order, read
        `batch` rows at a time by keyset pagination on `ord` (memory flat in the corpus size)."""
        last = 0
        while True:
            rows = self.conn.execute(
                f"SELECT ord, id, text, flags FROM items i WHERE ord > ? AND {condition} ORDER BY ord LIMIT ?",
                (last, *params, batch),
            ).fetchall()
            if not rows:
                return
            for r in rows:
                yield Item(id=r["id"], text=r["text"], row=r["ord"], flags=tuple(f for f in r["flags"].split(",") if f))
            last = rows[-1]["ord"]

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
