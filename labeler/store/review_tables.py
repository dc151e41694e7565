"""The run store's review tables: the queue, the audit strata and the reviews."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence

from labeler.store.base import Tables
from labeler.store.rows import QueueEntry, Review, Stratum

_INSERT_QUEUE = (
    "INSERT INTO queue (item_id, rank, reasons, priority, audit, inclusion_prob, stratum, created,"
    " llm_label, confidence, member_labels) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _queue_rows(entries: Iterable[QueueEntry], now: float) -> list[tuple[object, ...]]:
    return [
        (
            e.item_id,
            e.rank,
            json.dumps(list(e.reasons)),
            e.priority,
            int(e.audit),
            e.inclusion_prob,
            e.stratum,
            now,
            e.llm_label,
            e.confidence,
            json.dumps(dict(e.member_labels)),
        )
        for e in entries
    ]


# 6: where each review came from (tool, server, project: labeler.review.origin), so one project's import
# never rewrites another's; NULL for reviews stored before
ORIGIN_MIGRATION = "ALTER TABLE reviews ADD COLUMN origin TEXT"

_PUT_REVIEW = (
    "INSERT OR REPLACE INTO reviews (item_id, reviewer, label, correction_reason, note, source, imported_at,"
    " adjudication, origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _review_rows(reviews: Iterable[Review], now: float) -> list[tuple[object, ...]]:
    return [
        (r.item_id, r.reviewer, r.label, r.correction_reason, r.note, r.source, now, int(r.adjudication), r.origin)
        for r in reviews
    ]


class ReviewTables(Tables):
    def write_queue(self, entries: Sequence[QueueEntry], strata: Sequence[Stratum], *, seed: int) -> None:
        """Replace the queue and the audit strata, in one transaction (reviews are kept)."""
        now = time.time()
        with self.transaction():
            self.conn.execute("DELETE FROM queue")
            self.conn.execute("DELETE FROM audit_strata")
            self.conn.executemany(_INSERT_QUEUE, _queue_rows(entries, now))
            self.conn.executemany(
                "INSERT INTO audit_strata (stratum, population, sampled, seed) VALUES (?, ?, ?, ?)",
                [(s.name, s.population, s.sampled, seed) for s in strata],
            )

    def append_queue(self, entries: Sequence[QueueEntry]) -> None:
        """Add items to the queue, in one transaction, leaving the queued ones, the audit strata and the
        reviews as they are. An item already queued is an error (sqlite3.IntegrityError): check first."""
        with self.transaction():
            self.conn.executemany(_INSERT_QUEUE, _queue_rows(entries, time.time()))

    def queue(self) -> list[QueueEntry]:
        """The routed items in rank order, with their text."""
        rows = self.conn.execute(
            "SELECT q.*, i.text, c.distribution AS c_distribution FROM queue q JOIN items i ON i.id = q.item_id"
            " LEFT JOIN combined c ON c.item_id = q.item_id ORDER BY q.rank"
        ).fetchall()
        return [
            QueueEntry(
                item_id=r["item_id"],
                rank=int(r["rank"]),
                reasons=tuple(json.loads(r["reasons"] or "[]")),
                priority=float(r["priority"] or 0.0),
                audit=bool(r["audit"]),
                llm_label=r["llm_label"],
                confidence=r["confidence"],
                inclusion_prob=r["inclusion_prob"],
                stratum=r["stratum"],
                member_labels=json.loads(r["member_labels"] or "{}"),
                text=r["text"],
                elements=json.loads(r["c_distribution"] or "{}"),
            )
            for r in rows
        ]

    def audit_seed(self) -> int | None:
        """The seed the stored audit was drawn with (None without an audit)."""
        row = self.conn.execute("SELECT seed FROM audit_strata LIMIT 1").fetchone()
        return None if row is None else int(row[0])

    def audit_strata(self) -> list[Stratum]:
        return [
            Stratum(r["stratum"], int(r["population"]), int(r["sampled"]))
            for r in self.conn.execute("SELECT * FROM audit_strata ORDER BY stratum")
        ]

    # --- reviews -----------------------------------------------------------------------------
    def put_reviews(self, reviews: Iterable[Review]) -> int:
        """Insert or replace reviews (one per item and reviewer), in one transaction. Returns how many."""
        rows = _review_rows(reviews, time.time())
        with self.transaction():
            self.conn.executemany(_PUT_REVIEW, rows)
        return len(rows)

    def delete_reviews(self, keys: Iterable[tuple[str, str]]) -> int:
        """Remove the reviews of these (item id, reviewer) pairs, in one transaction. Returns how many."""
        keys = list(keys)
        with self.transaction():
            self.conn.executemany("DELETE FROM reviews WHERE item_id = ? AND reviewer = ?", keys)
        return len(keys)

    def reviews(self) -> dict[str, list[Review]]:
        """item id -> its reviews, oldest import first."""
        out: dict[str, list[Review]] = {}
        for r in self.conn.execute("SELECT * FROM reviews WHERE label IS NOT NULL ORDER BY imported_at, reviewer"):
            out.setdefault(r["item_id"], []).append(
                Review(
                    r["item_id"],
                    r["reviewer"],
                    r["label"],
                    r["correction_reason"],
                    r["note"],
                    r["source"] or "",
                    bool(r["adjudication"]),
                    r["origin"],
                )
            )
        return out

    def reviewers_done(self, reviewer: str) -> set[str]:
        """The items `reviewer` has answered."""
        return {r[0] for r in self.conn.execute("SELECT item_id FROM reviews WHERE reviewer = ?", (reviewer,))}

    def sync_reviews(self, put: Iterable[Review], remove: Iterable[tuple[str, str]]) -> tuple[int, int]:
        """Insert or replace the `put` reviews and delete those of the `remove` (item id, reviewer) pairs, in
        one transaction: an import is stored whole or not at all. Returns (written, removed)."""
        rows = _review_rows(put, time.time())
        keys = list(remove)
        with self.transaction():
            self.conn.executemany("DELETE FROM reviews WHERE item_id = ? AND reviewer = ?", keys)
            self.conn.executemany(_PUT_REVIEW, rows)
        return len(rows), len(keys)

    def clear_reviews_and_queue(self) -> None:
        """Forget the queue, the audit strata and every review (to route and review a copy of a run afresh)."""
        with self.transaction():
            for table in ("queue", "audit_strata", "reviews"):
                self.conn.execute(f"DELETE FROM {table}")
