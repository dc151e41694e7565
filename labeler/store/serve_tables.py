"""The run store's side of `labeler review serve`: the order items are served in, and every reviewer action.

    serve_items  (rebuilt at each start) the queued items and the mixed-in gold items with their place
                 `pos` in the order reviewers get them; `gold` holds the known label of a gold item
    serve_log    every answer, skip and undo given through the page, one row each, keyed by the page's
                 per-answer `nonce` (UNIQUE): a retried or double-submitted POST finds its nonce and
                 changes nothing, so each answer is applied exactly once. An answer on a queued item is
                 also a row of `reviews` (source "serve"), written in the same transaction; an answer on a
                 gold item stays here only (it measures the reviewer and is no review). `prev` keeps the
                 reviewer's earlier review of the item, as JSON, so undo can put it back.

Both tables are created here (IF NOT EXISTS) when the page starts, not by a numbered migration: nothing
but the page reads them. Every query reads one item, one reviewer's rows or an aggregate, never the
whole queue into memory, so a request costs the same with 10^2 or 10^5 queued items.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from labeler.store.base import Tables
from labeler.store.rows import Review

_SCHEMA = """
CREATE TABLE IF NOT EXISTS serve_items (item_id TEXT PRIMARY KEY, pos REAL NOT NULL, gold TEXT);
CREATE INDEX IF NOT EXISTS serve_items_pos ON serve_items (pos);
CREATE TABLE IF NOT EXISTS serve_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, nonce TEXT NOT NULL UNIQUE, reviewer TEXT NOT NULL,
    item_id TEXT, action TEXT NOT NULL, label TEXT, note TEXT, prev TEXT, undone INTEGER NOT NULL DEFAULT 0,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS serve_log_item ON serve_log (item_id, reviewer);
CREATE INDEX IF NOT EXISTS serve_log_reviewer ON serve_log (reviewer, seq);
"""

# an item this reviewer is done with: reviewed (any source), skipped here, or a gold item answered here
_MINE = (
    "(EXISTS (SELECT 1 FROM reviews r WHERE r.item_id = s.item_id AND r.reviewer = :who)"
    " OR EXISTS (SELECT 1 FROM serve_log l WHERE l.item_id = s.item_id AND l.reviewer = :who AND l.undone = 0"
    " AND l.action IN ('skip', 'gold')))"
)
# how many reviewers answered an item (reviews of every source, gold answers given here)
_ANSWERS = (
    "((SELECT COUNT(*) FROM reviews r WHERE r.item_id = s.item_id AND r.label IS NOT NULL)"
    " + (SELECT COUNT(*) FROM serve_log l WHERE l.item_id = s.item_id AND l.undone = 0 AND l.action = 'gold'))"
)


def _unit(salt: str, item_id: str) -> float:
    """A hashed place in [0, 1): the same for the same salt and id (labeler.review.live_common's hash)."""
    return int(hashlib.sha256(f"{salt}\0{item_id}".encode()).hexdigest()[:8], 16) / 16**8


@dataclass(frozen=True)
class ServeItem:
    """One item as the page shows it. `gold`: the known label of a mixed-in gold item (never shown)."""

    item_id: str
    text: str
    pos: float
    gold: str | None
    queued: bool
    rank: int | None
    reasons: tuple[str, ...]
    audit: bool
    llm_label: str | None
    confidence: float | None


@dataclass(frozen=True)
class Progress:
    total: int  # items served (queued + gold)
    cleared: int  # items with `overlap` answers
    mine: int  # items this reviewer answered or skipped
    reasons: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # reason -> (cleared, total)


@dataclass(frozen=True)
class Applied:
    """What an action did. `fresh` False: its nonce was seen before, nothing changed (a retry)."""

    fresh: bool
    item_id: str | None = None
    action: str | None = None


class ServeTables(Tables):
    def queue_size(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM queue").fetchone()[0])

    def prepare_serve(self, *, salt: str, blind: bool, gold_n: int) -> tuple[int, int]:
        """Create the page's tables and (re)build the serving order, in one transaction: the queue by rank,
        or with `blind` a hashed shuffle; `gold_n` gold items (input gold, not queued: a fixed hashed pick)
        placed at hashed positions among them. Returns (queued, gold) counts."""
        place = f"{salt}\0place"
        self.conn.create_function("labeler_unit", 2, _unit, deterministic=True)
        self.conn.executescript(_SCHEMA)
        with self.transaction():
            self.conn.execute("DELETE FROM serve_items")
            n = int(self.conn.execute("SELECT COUNT(*) FROM queue").fetchone()[0])
            order = "labeler_unit(:place, item_id)" if blind else "CAST(rank AS REAL)"
            self.conn.execute(
                f"INSERT INTO serve_items (item_id, pos) SELECT item_id, {order} FROM queue", {"place": place}
            )
            spread = "1.0" if blind else ":n"
            self.conn.execute(
                f"INSERT INTO serve_items (item_id, pos, gold) SELECT id, labeler_unit(:place, id) * {spread}, gold"
                " FROM items WHERE gold IS NOT NULL AND gold != '' AND id NOT IN (SELECT item_id FROM queue)"
                " ORDER BY labeler_unit(:salt, id) LIMIT :k",
                {"place": place, "salt": salt, "n": n, "k": gold_n},
            )
            g = int(self.conn.execute("SELECT COUNT(*) FROM serve_items WHERE gold IS NOT NULL").fetchone()[0])
        return n, g

    def serve_item(self, item_id: str) -> ServeItem | None:
        """One served item with its text and queue row (None: not served)."""
        row = self.conn.execute(
            "SELECT s.item_id, s.pos, s.gold, i.text, q.item_id AS qid, q.rank, q.reasons, q.audit, q.llm_label,"
            " q.confidence FROM serve_items s JOIN items i ON i.id = s.item_id"
            " LEFT JOIN queue q ON q.item_id = s.item_id WHERE s.item_id = ?",
            (item_id,),
        ).fetchone()
        if row is None:
            return None
        return ServeItem(
            item_id=row["item_id"],
            text=row["text"],
            pos=float(row["pos"]),
            gold=row["gold"],
            queued=row["qid"] is not None,
            rank=None if row["rank"] is None else int(row["rank"]),
            reasons=tuple(json.loads(row["reasons"] or "[]")),
            audit=bool(row["audit"]),
            llm_label=row["llm_label"],
            confidence=row["confidence"],
        )

    def next_served(self, reviewer: str, *, overlap: int) -> ServeItem | None:
        """The first item in serving order that this reviewer is not done with and that has fewer than
        `overlap` answers. Walks the order index from the start: cost grows with the items passed over,
        not with the queue."""
        row = self.conn.execute(
            f"SELECT s.item_id FROM serve_items s WHERE NOT {_MINE} AND {_ANSWERS} < :overlap ORDER BY s.pos LIMIT 1",
            {"who": reviewer, "overlap": overlap},
        ).fetchone()
        return None if row is None else self.serve_item(row[0])

    def serve_totals(self) -> tuple[int, dict[str, int]]:
        """Items served, and queued items per routing reason: read once at start (they do not change)."""
        total = int(self.conn.execute("SELECT COUNT(*) FROM serve_items").fetchone()[0])
        rows = self.conn.execute(
            "SELECT j.value AS reason, COUNT(*) FROM queue q, json_each(q.reasons) j GROUP BY j.value"
        ).fetchall()
        return total, {str(r): int(n) for r, n in rows}

    def serve_progress(
        self, reviewer: str, *, overlap: int, total: int, reason_totals: Mapping[str, int] | None
    ) -> Progress:
        """Counts for the progress bar: aggregates over the answers given, never over the queue (`total`
        and `reason_totals` come from serve_totals)."""
        answered = (
            "SELECT item_id, COUNT(*) AS n FROM (SELECT item_id FROM reviews WHERE label IS NOT NULL"
            " UNION ALL SELECT item_id FROM serve_log WHERE undone = 0 AND action = 'gold') GROUP BY item_id"
        )
        cleared = int(
            self.conn.execute(
                f"SELECT COUNT(*) FROM ({answered}) a JOIN serve_items s ON s.item_id = a.item_id WHERE a.n >= ?",
                (overlap,),
            ).fetchone()[0]
        )
        mine = int(
            self.conn.execute(
                "SELECT COUNT(*) FROM (SELECT item_id FROM reviews WHERE reviewer = :who UNION SELECT item_id FROM"
                " serve_log WHERE reviewer = :who AND undone = 0 AND action IN ('skip', 'gold')) m"
                " JOIN serve_items s ON s.item_id = m.item_id",
                {"who": reviewer},
            ).fetchone()[0]
        )
        reasons: dict[str, tuple[int, int]] = {}
        if reason_totals is not None:
            done = dict(
                self.conn.execute(
                    f"SELECT j.value, COUNT(*) FROM ({answered}) a JOIN queue q ON q.item_id = a.item_id,"
                    " json_each(q.reasons) j WHERE a.n >= ? GROUP BY j.value",
                    (overlap,),
                ).fetchall()
            )
            reasons = {r: (int(done.get(r, 0)), n) for r, n in reason_totals.items()}
        return Progress(total, cleared, mine, reasons)

    # --- actions: one transaction each, exactly once per nonce -------------------------------------
    def _seen(self, nonce: str) -> bool:
        return self.conn.execute("SELECT 1 FROM serve_log WHERE nonce = ?", (nonce,)).fetchone() is not None

    def serve_answer(self, nonce: str, review: Review, *, gold: bool) -> Applied:
        """Store one answer given on the page. A queued item's answer becomes the reviewer's review of it
        (replacing an earlier one, which is kept for undo); a gold item's answer is logged only."""
        with self.transaction():
            if self._seen(nonce):
                return Applied(False)
            prev = None
            if not gold:
                old = self.conn.execute(
                    "SELECT label, correction_reason, note, source, adjudication FROM reviews"
                    " WHERE item_id = ? AND reviewer = ?",
                    (review.item_id, review.reviewer),
                ).fetchone()
                prev = None if old is None else json.dumps(dict(old))
                self.conn.execute(
                    "INSERT OR REPLACE INTO reviews (item_id, reviewer, label, correction_reason, note, source,"
                    " imported_at, adjudication) VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                    (
                        review.item_id,
                        review.reviewer,
                        review.label,
                        review.correction_reason,
                        review.note,
                        review.source,
                        time.time(),
                    ),
                )
            self.conn.execute(
                "INSERT INTO serve_log (nonce, reviewer, item_id, action, label, note, prev, at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    nonce,
                    review.reviewer,
                    review.item_id,
                    "gold" if gold else "answer",
                    review.label,
                    review.note,
                    prev,
                    time.time(),
                ),
            )
        return Applied(True, review.item_id, "gold" if gold else "answer")

    def serve_skip(self, nonce: str, reviewer: str, item_id: str) -> Applied:
        with self.transaction():
            if self._seen(nonce):
                return Applied(False)
            self.conn.execute(
                "INSERT INTO serve_log (nonce, reviewer, item_id, action, at) VALUES (?, ?, ?, 'skip', ?)",
                (nonce, reviewer, item_id, time.time()),
            )
        return Applied(True, item_id, "skip")

    def serve_undo(self, nonce: str, reviewer: str) -> Applied:
        """Take back this reviewer's last answer or skip on the page (an earlier review of the item is put
        back). A retried undo (same nonce) takes back nothing more."""
        with self.transaction():
            if self._seen(nonce):
                return Applied(False)
            last = self.conn.execute(
                "SELECT seq, item_id, action, label, prev FROM serve_log WHERE reviewer = ? AND undone = 0"
                " AND action IN ('answer', 'skip', 'gold') ORDER BY seq DESC LIMIT 1",
                (reviewer,),
            ).fetchone()
            self.conn.execute(
                "INSERT INTO serve_log (nonce, reviewer, item_id, action, at) VALUES (?, ?, ?, 'undo', ?)",
                (nonce, reviewer, None if last is None else last["item_id"], time.time()),
            )
            if last is None:
                return Applied(True)
            self.conn.execute("UPDATE serve_log SET undone = 1 WHERE seq = ?", (last["seq"],))
            if last["action"] == "answer":
                self.conn.execute(
                    "DELETE FROM reviews WHERE item_id = ? AND reviewer = ? AND source = 'serve' AND label = ?",
                    (last["item_id"], reviewer, last["label"]),
                )
                if last["prev"]:
                    p = json.loads(last["prev"])
                    self.conn.execute(
                        "INSERT OR REPLACE INTO reviews (item_id, reviewer, label, correction_reason, note, source,"
                        " imported_at, adjudication) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            last["item_id"],
                            reviewer,
                            p["label"],
                            p["correction_reason"],
                            p["note"],
                            p["source"],
                            time.time(),
                            p["adjudication"],
                        ),
                    )
        return Applied(True, last["item_id"], last["action"])

    # --- the status page -----------------------------------------------------------------------------
    def serve_answers(self) -> dict[str, dict[str, str]]:
        """item -> reviewer -> label of every answer given on the page and still standing (gold items too)."""
        out: dict[str, dict[str, str]] = {}
        for item, who, label in self.conn.execute(
            "SELECT l.item_id, l.reviewer, l.label FROM serve_log l WHERE l.undone = 0 AND l.action = 'gold'"
            " UNION ALL SELECT r.item_id, r.reviewer, r.label FROM reviews r WHERE r.source = 'serve'"
        ):
            out.setdefault(item, {})[who] = label
        return out

    def serve_gold(self) -> dict[str, str]:
        """item -> known label of the gold items mixed in."""
        return dict(self.conn.execute("SELECT item_id, gold FROM serve_items WHERE gold IS NOT NULL").fetchall())

    def serve_counts(self) -> dict[str, dict[str, int]]:
        """reviewer -> action -> how many (still standing) on the page."""
        out: dict[str, dict[str, int]] = {}
        for who, action, n in self.conn.execute(
            "SELECT reviewer, action, COUNT(*) FROM serve_log WHERE undone = 0 GROUP BY reviewer, action"
        ):
            out.setdefault(who, {})[action] = int(n)
        return out
