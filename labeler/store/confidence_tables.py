"""The run store's confidence tables: combined (one row per item) and the stored calibrators."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

from labeler.store.base import Tables
from labeler.store.decode import combined_row
from labeler.store.rows import CombinedRow, StoredCalibrator


class ConfidenceTables(Tables):
    def put_combined(self, rows: Iterable[CombinedRow], *, signature: str, batch: int = 2000) -> int:
        """Replace the combined table with `rows`, in one transaction, and record the results' signature.
        Calibrated values are not part of the rows: `set_calibrated` writes them. Returns the row count."""
        n = 0
        with self.transaction():
            self.conn.execute("DELETE FROM combined")
            buf: list[tuple[Any, ...]] = []
            for c in rows:
                buf.append(
                    (
                        c.item_id,
                        c.label,
                        c.confidence,
                        json.dumps(dict(c.distribution)),
                        c.vote_share,
                        c.entropy,
                        c.divergence,
                        int(c.disagree),
                        json.dumps(dict(c.member_labels)),
                        c.raw_label,
                    )
                )
                if len(buf) >= batch:
                    n += self._insert_combined(buf)
            n += self._insert_combined(buf)
            self.set_meta("combined_signature", signature)
            self.set_meta("combined_at", repr(time.time()))
        return n

    def _insert_combined(self, buf: list[tuple[Any, ...]]) -> int:
        self.conn.executemany(
            "INSERT INTO combined (item_id, label, confidence, distribution, vote_share, entropy, divergence,"
            " disagree, member_labels, raw_label) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            buf,
        )
        n = len(buf)
        buf.clear()
        return n

    def results_signature(self) -> str:
        """Changes whenever a result is added or rewritten: the combined table is stale when it differs."""
        n, last = self.conn.execute("SELECT COUNT(*), COALESCE(MAX(finished_at), 0) FROM results").fetchone()
        return f"{n}:{last!r}"

    def combined_rows(self, *, labeled_only: bool = False, batch: int = 2000) -> Iterator[CombinedRow]:
        """The combined rows in item-id order (keyset pages, so writes between pages are safe)."""
        last = ""
        where = " AND label IS NOT NULL" if labeled_only else ""
        while True:
            rows = self.conn.execute(
                f"SELECT * FROM combined WHERE item_id > ?{where} ORDER BY item_id LIMIT ?", (last, batch)
            ).fetchall()
            if not rows:
                return
            for r in rows:
                yield combined_row(r, "")
            last = rows[-1]["item_id"]

    def set_calibrated(self, values: Iterable[tuple[str, float | None]]) -> None:
        """Write the calibrated confidence of each (item id, value), in one transaction."""
        with self.transaction():
            self.conn.executemany("UPDATE combined SET calibrated = ? WHERE item_id = ?", [(v, i) for i, v in values])

    def put_calibrator(self, c: StoredCalibrator) -> None:
        """Store (or replace) the calibrator of `c.method` and its out-of-fold values."""
        with self.transaction():
            self.conn.execute(
                "INSERT OR REPLACE INTO calibrators (method, kind, params, cv_log_loss, n_fit, fitted_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (c.method, c.kind, json.dumps(dict(c.params)), c.cv_log_loss, c.n_fit, c.fitted_at),
            )
            self.conn.execute("DELETE FROM calibrated_oof WHERE method = ?", (c.method,))
            self.conn.executemany(
                "INSERT INTO calibrated_oof (method, item_id, value) VALUES (?, ?, ?)",
                [(c.method, i, float(v)) for i, v in c.out_of_fold.items()],
            )

    def calibrator(self, method: str) -> StoredCalibrator | None:
        row = self.conn.execute("SELECT * FROM calibrators WHERE method = ?", (method,)).fetchone()
        if row is None:
            return None
        oof = dict(
            self.conn.execute("SELECT item_id, value FROM calibrated_oof WHERE method = ?", (method,)).fetchall()
        )
        return StoredCalibrator(
            method=row["method"],
            kind=row["kind"],
            params=json.loads(row["params"] or "{}"),
            cv_log_loss=float(row["cv_log_loss"] or 0.0),
            n_fit=int(row["n_fit"] or 0),
            fitted_at=float(row["fitted_at"] or 0.0),
            out_of_fold=oof,
        )
