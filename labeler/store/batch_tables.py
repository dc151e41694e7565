"""The run store's Batch API tables (labeler.label.batch_api), created by migration 5:

    batch_parts     one row per input file / batch: its local JSONL, the uploaded file id, the batch id,
                    the remote status and counts, and where the run is with it (`state`)
    batch_requests  one row per request line: its custom_id, part, member, the items it asks (in prompt
                    order) with their cache keys, and whether its answer was ingested ('sent', 'done',
                    'failed' with the error)

An item belongs to at most one request per member (`batch_items`), so planning never submits it twice.
States of a part, in order: planned (file written) → uploaded (file id) → submitted (batch id) → ended
(remote status final) → ingested (results stored). Every step is recorded before the next begins.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from labeler.store.base import Tables
from labeler.types import Item, ItemResult

MIGRATION = """
CREATE TABLE batch_parts (
    part INTEGER PRIMARY KEY, member TEXT NOT NULL, path TEXT NOT NULL, filename TEXT NOT NULL,
    requests INTEGER NOT NULL, bytes INTEGER NOT NULL, state TEXT NOT NULL,
    file_id TEXT, batch_id TEXT, status TEXT, output_file_id TEXT, error_file_id TEXT,
    counts TEXT NOT NULL DEFAULT '{}', created REAL NOT NULL, updated REAL NOT NULL
);
CREATE TABLE batch_requests (
    custom_id TEXT PRIMARY KEY, part INTEGER NOT NULL, member TEXT NOT NULL,
    item_ids TEXT NOT NULL, keys TEXT NOT NULL, truncated TEXT NOT NULL DEFAULT '[]',
    state TEXT NOT NULL DEFAULT 'sent', error TEXT
);
CREATE INDEX batch_requests_part ON batch_requests (part, state);
CREATE TABLE batch_items (
    item_id TEXT NOT NULL, member TEXT NOT NULL, custom_id TEXT NOT NULL, PRIMARY KEY (item_id, member)
);
"""

LIVE_STATES = ("planned", "uploaded", "submitted", "ended")


@dataclass(frozen=True)
class BatchPart:
    part: int
    member: str
    path: str
    filename: str
    requests: int
    bytes: int
    state: str
    file_id: str | None
    batch_id: str | None
    status: str | None
    output_file_id: str | None
    error_file_id: str | None
    counts: dict[str, int]
    created: float


@dataclass(frozen=True)
class BatchRequest:
    custom_id: str
    part: int
    member: str
    item_ids: tuple[str, ...]
    keys: tuple[str, ...]
    truncated: tuple[bool, ...]
    state: str


def _part(r: Any) -> BatchPart:
    return BatchPart(
        part=r["part"],
        member=r["member"],
        path=r["path"],
        filename=r["filename"],
        requests=r["requests"],
        bytes=r["bytes"],
        state=r["state"],
        file_id=r["file_id"],
        batch_id=r["batch_id"],
        status=r["status"],
        output_file_id=r["output_file_id"],
        error_file_id=r["error_file_id"],
        counts=json.loads(r["counts"] or "{}"),
        created=r["created"],
    )


def _request(r: Any) -> BatchRequest:
    return BatchRequest(
        r["custom_id"],
        r["part"],
        r["member"],
        tuple(json.loads(r["item_ids"])),
        tuple(json.loads(r["keys"])),
        tuple(json.loads(r["truncated"])),
        r["state"],
    )


class PartPlan:
    """The writes of one part being planned (see BatchTables.planning_batch_part)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.finished = False

    def add(self, r: BatchRequest) -> None:
        self.conn.execute(
            "INSERT INTO batch_requests (custom_id, part, member, item_ids, keys, truncated) VALUES (?, ?, ?, ?, ?, ?)",
            (r.custom_id, r.part, r.member, json.dumps(r.item_ids), json.dumps(r.keys), json.dumps(r.truncated)),
        )
        self.conn.executemany(
            "INSERT INTO batch_items (item_id, member, custom_id) VALUES (?, ?, ?)",
            [(i, r.member, r.custom_id) for i in r.item_ids],
        )

    def finish(self, part: BatchPart) -> None:
        now = time.time()
        self.conn.execute(
            "INSERT INTO batch_parts (part, member, path, filename, requests, bytes, state, counts, created, updated)"
            " VALUES (?, ?, ?, ?, ?, ?, 'planned', '{}', ?, ?)",
            (part.part, part.member, part.path, part.filename, part.requests, part.bytes, now, now),
        )
        self.finished = True


class BatchTables(Tables):
    put_result: Callable[[ItemResult], None]  # RunStore's

    def unbatched_pending(self, member: str, *, batch: int = 1000) -> Iterator[Item]:
        """Items with no result for `member` that no batch request holds, in input order, in batches."""
        return self.items_where(
            "NOT EXISTS (SELECT 1 FROM results r WHERE r.item_id = i.id AND r.member = ?)"
            " AND NOT EXISTS (SELECT 1 FROM batch_items b WHERE b.item_id = i.id AND b.member = ?)",
            (member, member),
            batch=batch,
        )

    def item_texts(self, item_ids: Sequence[str]) -> dict[str, str]:
        """The texts of the items `item_ids` (those of one batch request), by id."""
        marks = ",".join("?" * len(item_ids))
        rows = self.conn.execute(f"SELECT id, text FROM items WHERE id IN ({marks})", tuple(item_ids)).fetchall()
        return {r["id"]: r["text"] for r in rows}

    def next_batch_part(self) -> int:
        return int(self.conn.execute("SELECT COALESCE(MAX(part), 0) + 1 FROM batch_parts").fetchone()[0])

    @contextlib.contextmanager
    def planning_batch_part(self) -> Iterator[PartPlan]:
        """One transaction for a part being planned: `add` its requests as its file is written, then `finish`
        with the part itself. A crash (or an error) before the end records none of it."""
        with self.transaction():
            plan = PartPlan(self.conn)
            yield plan
            if not plan.finished:
                raise RuntimeError("planning_batch_part: finish() was not called")

    def batch_parts(self, *, live_only: bool = False) -> list[BatchPart]:
        where = f" WHERE state IN ({','.join('?' * len(LIVE_STATES))})" if live_only else ""
        rows = self.conn.execute(f"SELECT * FROM batch_parts{where} ORDER BY part", LIVE_STATES if live_only else ())
        return [_part(r) for r in rows]

    def batch_part(self, part: int) -> BatchPart:
        return _part(self.conn.execute("SELECT * FROM batch_parts WHERE part = ?", (part,)).fetchone())

    def update_batch_part(self, part: int, **values: Any) -> None:
        """Set columns of a part (state, file_id, batch_id, status, output_file_id, error_file_id, counts)."""
        allowed = {"state", "file_id", "batch_id", "status", "output_file_id", "error_file_id", "counts"}
        assert set(values) <= allowed, values
        if "counts" in values:
            values["counts"] = json.dumps(values["counts"])
        sets = ", ".join(f"{k} = ?" for k in values)
        with self.transaction():
            self.conn.execute(
                f"UPDATE batch_parts SET {sets}, updated = ? WHERE part = ?", (*values.values(), time.time(), part)
            )

    def batch_requests(self, part: int, *, state: str | None = None) -> Iterator[BatchRequest]:
        q = "SELECT * FROM batch_requests WHERE part = ?" + (" AND state = ?" if state else "") + " ORDER BY rowid"
        cur = self.conn.execute(q, (part, state) if state else (part,))
        while rows := cur.fetchmany(1000):
            yield from map(_request, rows)

    def batch_request(self, custom_id: str) -> BatchRequest | None:
        r = self.conn.execute("SELECT * FROM batch_requests WHERE custom_id = ?", (custom_id,)).fetchone()
        if r is None:
            return None
        return _request(r)

    def ingest_batch_part(
        self,
        part: int,
        results: Iterable[ItemResult],
        outcomes: Iterable[tuple[str, str, str | None]],
        *,
        replan_unanswered: bool,
    ) -> None:
        """Store a finished part's results and each request's outcome ((custom_id, 'done'|'failed', error)),
        and mark the part ingested — all in one transaction, so a crash midway leaves the part to ingest
        again, never half of it. `replan_unanswered`: requests with no outcome (a cancelled or expired
        batch) are dropped, so their items are planned into a new batch; otherwise they fail."""
        with self.transaction():
            for r in results:
                self.put_result(r)
            self.writes.flush()  # joins this transaction
            self.conn.executemany(
                "UPDATE batch_requests SET state = ?, error = ? WHERE custom_id = ?",
                [(state, error, cid) for cid, state, error in outcomes],
            )
            if replan_unanswered:
                self.conn.execute(
                    "DELETE FROM batch_items WHERE custom_id IN"
                    " (SELECT custom_id FROM batch_requests WHERE part = ? AND state = 'sent')",
                    (part,),
                )
                self.conn.execute("DELETE FROM batch_requests WHERE part = ? AND state = 'sent'", (part,))
            else:
                self.conn.execute(
                    "UPDATE batch_requests SET state = 'failed', error = 'no answer in the output file'"
                    " WHERE part = ? AND state = 'sent'",
                    (part,),
                )
            self.conn.execute(
                "UPDATE batch_parts SET state = 'ingested', updated = ? WHERE part = ?", (time.time(), part)
            )

    def drop_batch_part(self, part: int) -> None:
        """Forget a part that was never submitted (cancelled before its batch existed): its items plan again."""
        with self.transaction():
            self.conn.execute(
                "DELETE FROM batch_items WHERE custom_id IN (SELECT custom_id FROM batch_requests WHERE part = ?)",
                (part,),
            )
            self.conn.execute("DELETE FROM batch_requests WHERE part = ?", (part,))
            self.conn.execute("DELETE FROM batch_parts WHERE part = ?", (part,))

    def batch_request_counts(self) -> dict[str, int]:
        return {s: n for s, n in self.conn.execute("SELECT state, COUNT(*) FROM batch_requests GROUP BY state")}
