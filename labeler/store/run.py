"""The run store: one run's durable state, and the only place that speaks SQL to it.

    runs/<run-id>/manifest.json   config snapshot, template hashes, models, params, version: written first
    runs/<run-id>/run.sqlite      every table of the run, each created by a numbered migration:
        items          the ingested corpus (ord, id, text, flags, gold, skip)
        results        one answer per (item, member), committed as soon as it exists; spend summed over attempts
        meta           key/value facts (ingested, combined_signature, ...)
        combined       the members' answers combined per item, with the calibrated confidence
        calibrators    one fitted calibrator per confidence method
        calibrated_oof out-of-fold calibrated values of the human-labelled items (kept across re-combines)
        queue          the routed items; audit_strata: the random audit's strata
        reviews        one row per (item, reviewer)
        corrections, tunings   the bias correction every combine applies, and `labeler tune`'s reports
        batch_parts, batch_requests, batch_items   the Batch API's files, batches and requests
    <runs root>/cache.sqlite      responses keyed by Request.cache_key(), shared by all runs (store.cache)

Every method reads or writes typed rows (labeler.store.rows); `transaction()` groups writes.

A process killed at any point loses at most the answers in flight or answered in the last 20 ms
(results are group-committed, see GroupCommit); resume asks for those again. Schema changes are numbered
migrations applied in order (PRAGMA user_version). Reads stream in batches, so memory stays flat.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from labeler.config import TaskConfig, parse_config
from labeler.errors import InputError, RunStoreError
from labeler.inputs import Row
from labeler.safe_text import redact
from labeler.store.base import read_manifest
from labeler.store.batch_tables import MIGRATION as BATCH_MIGRATION
from labeler.store.batch_tables import BatchTables
from labeler.store.confidence_tables import ConfidenceTables
from labeler.store.db import connect, migrate
from labeler.store.decode import item_rows as decode_item_rows
from labeler.store.review_tables import ORIGIN_MIGRATION, ReviewTables
from labeler.store.rows import (
    ItemRows,
    Review,
)
from labeler.store.tune_tables import TuneTables
from labeler.types import Item, ItemResult

MIGRATIONS: list[str] = [
    # 1: the corpus and per-member results
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE items (
        ord INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, text TEXT NOT NULL,
        flags TEXT NOT NULL DEFAULT '', gold TEXT, skip TEXT
    );
    CREATE TABLE results (
        item_id TEXT NOT NULL, member TEXT NOT NULL, status TEXT NOT NULL,
        label TEXT, confidence REAL, distributions TEXT NOT NULL DEFAULT '{}',
        reason TEXT, raw TEXT, model TEXT NOT NULL DEFAULT '',
        input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0,
        cost REAL NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0, cached INTEGER NOT NULL DEFAULT 0,
        cache_key TEXT, finished_at REAL NOT NULL,
        PRIMARY KEY (item_id, member)
    );
    """,
    # 2: the later stages' tables (IF NOT EXISTS: runs made before migrations owned them already have them)
    """
    CREATE TABLE IF NOT EXISTS combined (
        item_id TEXT PRIMARY KEY, label TEXT, confidence REAL, distribution TEXT, vote_share REAL, entropy REAL,
        divergence REAL, disagree INTEGER, member_labels TEXT, calibrated REAL
    );
    CREATE TABLE IF NOT EXISTS calibrators (
        method TEXT PRIMARY KEY, kind TEXT, params TEXT, cv_log_loss REAL, n_fit INTEGER, fitted_at REAL
    );
    CREATE TABLE IF NOT EXISTS queue (
        item_id TEXT PRIMARY KEY, rank INTEGER, reasons TEXT, priority REAL, audit INTEGER,
        inclusion_prob REAL, stratum TEXT, created REAL, llm_label TEXT, confidence REAL, member_labels TEXT
    );
    CREATE TABLE IF NOT EXISTS audit_strata (
        stratum TEXT PRIMARY KEY, population INTEGER, sampled INTEGER, seed INTEGER
    );
    CREATE TABLE IF NOT EXISTS reviews (
        item_id TEXT, reviewer TEXT, label TEXT, correction_reason TEXT, note TEXT, source TEXT, imported_at REAL,
        adjudication INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (item_id, reviewer)
    );
    """,
    # 3: out-of-fold calibrated values, so a re-combine (resume) can re-apply the stored calibrator
    """
    CREATE TABLE calibrated_oof (method TEXT NOT NULL, item_id TEXT NOT NULL, value REAL NOT NULL,
        PRIMARY KEY (method, item_id));
    """,
    # 4: the quality loop (labeler.store.tune_tables): the bias correction, the tunings, the raw label
    """
    ALTER TABLE combined ADD COLUMN raw_label TEXT;
    CREATE TABLE corrections (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, params TEXT NOT NULL,
        fitted_at REAL NOT NULL, active INTEGER NOT NULL DEFAULT 1);
    CREATE TABLE tunings (id INTEGER PRIMARY KEY, created REAL NOT NULL, report TEXT NOT NULL);
    """,
    # 5: the Batch API's parts and requests (labeler.store.batch_tables)
    BATCH_MIGRATION,
    ORIGIN_MIGRATION,  # 6: reviews.origin (labeler.store.review_tables)
    # 7: task types (issue 19): the quoted spans of an answer that were not found in the text
    "ALTER TABLE results ADD COLUMN dropped INTEGER NOT NULL DEFAULT 0",
]


_RESULT_FIELDS = tuple(f.name for f in fields(ItemResult))
_SUMMED = frozenset({"input_tokens", "output_tokens", "cost", "attempts"})


class RunStore(ConfidenceTables, ReviewTables, TuneTables, BatchTables):
    def __init__(self, run_dir: Path, conn: sqlite3.Connection) -> None:
        super().__init__(conn)
        self.run_dir = run_dir
        self._keys: tuple[str, ...] | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    @classmethod
    def create(cls, run_dir: Path, manifest: dict[str, Any]) -> RunStore:
        if (run_dir / "manifest.json").exists():
            raise RunStoreError(f"{run_dir} already holds a run; use `labeler resume {run_dir}` or another --run-dir")
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = run_dir / "manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
        os.replace(tmp, run_dir / "manifest.json")
        return cls.open(run_dir)

    @classmethod
    def open(cls, run_dir: Path) -> RunStore:
        read_manifest(run_dir)  # no manifest, or a damaged one: one RunStoreError line, before any table is touched
        conn = connect(run_dir / "run.sqlite")
        migrate(conn, MIGRATIONS)
        return cls(run_dir, conn)

    def flush(self) -> None:
        """Commit the results written so far (labeling does this by itself within 20 ms)."""
        self.writes.flush()

    def close(self) -> None:
        self.writes.flush()
        self.conn.close()

    @property
    def manifest(self) -> dict[str, Any]:
        return read_manifest(self.run_dir)

    def task(self) -> TaskConfig:
        """The run's task config: the manifest's snapshot, not the live TOML file (which may have been edited
        since; start a new run to use its changes). Paths inside resolve against the file's folder. A routing
        threshold stored in the run (`routing_threshold()`) overrides routing.low_confidence."""
        manifest = self.manifest
        raw = manifest.get("config")
        if not isinstance(raw, dict):
            raise RunStoreError(f"{self.run_dir}/manifest.json holds no config snapshot; start a new run")
        task = parse_config(raw, path=Path(manifest.get("config_path", self.run_dir / "task.toml")))
        tuned = self.routing_threshold()  # set by `labeler relabel --target-accuracy` (tune_tables)
        if tuned is not None:
            task = replace(task, routing=replace(task.routing, low_confidence=tuned.value))
        return task

    def has_table(self, name: str) -> bool:
        """Whether a later stage has added table `name` (combined, queue, reviews, ...) to this run."""
        q = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return self.conn.execute(q, (name,)).fetchone() is not None

    # --- the corpus --------------------------------------------------------------------------
    def ingest(self, rows: Iterable[Row], *, members: Iterable[str], batch: int = 2000) -> dict[str, int]:
        """Copy the input into the run, in one transaction (a crash midway leaves no half corpus).
        Duplicate ids are an InputError naming both rows. Skipped rows get a 'skipped' result."""
        if self.get_meta("ingested") == "1":
            raise RunStoreError("this run already holds its corpus")
        members = list(members)
        counts = {"items": 0, "skipped": 0, "flagged": 0}
        c = self.conn
        c.execute("BEGIN")
        try:
            c.execute("DELETE FROM items")
            c.execute("DELETE FROM results")
            buf: list[Row] = []
            flushed = 0  # rows of earlier batches: their ords are 1..flushed

            def flush() -> None:
                nonlocal flushed
                try:
                    c.executemany(
                        "INSERT INTO items (id, text, flags, gold, skip) VALUES (?, ?, ?, ?, ?)",
                        [(r.item.id, r.item.text, ",".join(r.item.flags), r.gold, r.skip) for r in buf],
                    )
                except sqlite3.IntegrityError:
                    self._raise_duplicate(buf, flushed)
                flushed += len(buf)
                now = time.time()
                c.executemany(
                    "INSERT INTO results (item_id, member, status, reason, finished_at) VALUES (?, ?, 'skipped', ?, ?)",
                    [(r.item.id, m, r.skip, now) for r in buf if r.skip for m in members],
                )
                buf.clear()

            for row in rows:
                buf.append(row)
                counts["items"] += 1
                counts["skipped"] += row.skip is not None
                counts["flagged"] += bool(row.item.flags)
                if len(buf) >= batch:
                    flush()
            flush()
            c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('ingested', '1')")
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return counts

    def _raise_duplicate(self, buf: list[Row], flushed: int) -> None:
        """Name the first repeated id of `buf` and both its rows. Part of `buf` may already be inserted,
        so only rows of earlier batches (ord <= flushed) count as found in the table."""
        seen: dict[str, int] = {}
        for r in buf:
            prev = self.conn.execute("SELECT ord FROM items WHERE id = ? AND ord <= ?", (r.item.id, flushed)).fetchone()
            first = prev[0] if prev else seen.get(r.item.id)
            if first is not None:
                raise InputError(
                    f"duplicate id {r.item.id!r} (rows {first} and {r.item.row}); make ids unique "
                    'or set input.id_column = "" to number rows'
                )
            seen[r.item.id] = r.item.row
        raise InputError("duplicate ids in the input; make ids unique")

    def hold_out_gold(self) -> dict[str, str]:
        """Remove the gold column from the run and return it (id -> gold): for studies that treat the gold
        labels as held-out truth, so no stage can use them as human labels."""
        gold = self.gold_labels()
        with self.transaction():
            self.conn.execute("UPDATE items SET gold = NULL")
        return gold

    def set_flags(self, item_id: str, flags: Iterable[str]) -> None:
        self.conn.execute("UPDATE items SET flags = ? WHERE id = ?", (",".join(sorted(set(flags))), item_id))

    def pending(self, member: str, *, retry_failed: bool = False, batch: int = 1000) -> Iterator[Item]:
        """Items with no final result for `member`, in input order, read in batches."""
        statuses = _final(retry_failed)
        marks = ",".join("?" * len(statuses))
        return self.items_where(
            f"NOT EXISTS (SELECT 1 FROM results r WHERE r.item_id = i.id AND r.member = ? AND r.status IN ({marks}))",
            (member, *statuses),
            batch=batch,
        )

    def count_pending(self, member: str, *, retry_failed: bool = False) -> int:
        """How many items `pending(member, retry_failed=...)` would yield."""
        statuses = _final(retry_failed)
        done = self.conn.execute(
            f"SELECT COUNT(*) FROM results WHERE member = ? AND status IN ({','.join('?' * len(statuses))})",
            (member, *statuses),
        ).fetchone()[0]
        return self.count_items() - int(done)

    def count_items(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    # --- results -----------------------------------------------------------------------------
    def put_result(self, r: ItemResult) -> None:
        """Store one member's answer for one item. A later answer replaces the earlier one, but the spend
        (tokens, cost, attempts) is summed over every attempt: what was paid stays counted."""
        d = {name: getattr(r, name) for name in _RESULT_FIELDS}  # not asdict: its deep copy is a hot spot
        for key in ("reason", "raw"):  # a server that echoes the API key in a 200 answer: never stored
            if isinstance(d[key], str):
                d[key] = redact(d[key], self._secrets())
        d["distributions"] = json.dumps({method: dict(dist) for method, dist in r.distributions.items()})
        d["cached"] = int(r.cached)
        d["finished_at"] = time.time()
        cols = ",".join(d)
        update = ",".join(f"{c} = results.{c} + excluded.{c}" if c in _SUMMED else f"{c} = excluded.{c}" for c in d)
        self.writes.execute(
            f"INSERT INTO results ({cols}) VALUES ({','.join('?' * len(d))})"
            f" ON CONFLICT (item_id, member) DO UPDATE SET {update}",
            tuple(d.values()),
        )

    def _secrets(self) -> tuple[str, ...]:
        """The API keys of the run's members and replicas (from the environment), redacted from results."""
        if self._keys is None:
            try:
                eps = [e for m in self.task().members for e in (m.endpoint, *m.endpoint.endpoints)]
            except RunStoreError:  # no config snapshot: bearer and sk- shapes are still redacted
                eps = []
            self._keys = tuple({e.api_key() for e in eps})
        return self._keys

    def status_counts(self, member: str | None = None) -> dict[str, int]:
        q = "SELECT status, COUNT(*) FROM results" + (" WHERE member = ?" if member else "") + " GROUP BY status"
        return {s: n for s, n in self.conn.execute(q, (member,) if member else ())}

    def totals(self) -> dict[str, float]:
        row = self.conn.execute(
            "SELECT COALESCE(SUM(input_tokens),0), COALESCE(SUM(output_tokens),0), COALESCE(SUM(cost),0),"
            " COALESCE(SUM(cached),0), COALESCE(SUM(dropped),0) FROM results"
        ).fetchone()
        return {"input_tokens": row[0], "output_tokens": row[1], "cost": row[2], "cached": row[3], "dropped": row[4]}

    def iter_results(self, *, member: str | None = None, batch: int = 2000) -> Iterator[sqlite3.Row]:
        """Result rows joined with their item (text, flags, gold), in input order."""
        q = (
            "SELECT i.ord, i.id AS item_id, i.text, i.flags, i.gold, r.* FROM items i"
            " JOIN results r ON r.item_id = i.id"
            + (" WHERE r.member = ?" if member else "")
            + " ORDER BY i.ord, r.member"
        )
        cur = self.conn.execute(q, (member,) if member else ())
        while True:
            rows = cur.fetchmany(batch)
            if not rows:
                return
            yield from rows

    # --- items with their answers ------------------------------------------------------------
    def item_ids(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT id FROM items")}

    def gold_labels(self) -> dict[str, str]:
        """item id -> the input's gold label, for the items that have one."""
        return {
            r[0]: r[1] for r in self.conn.execute("SELECT id, gold FROM items WHERE gold IS NOT NULL AND gold != ''")
        }

    def item_rows(self, *, batch: int = 2000) -> Iterator[ItemRows]:
        """Every item that has at least one result, in input order, with its results and combined row:
        one streaming join, so memory stays flat in the corpus size."""
        cur = self.conn.execute(
            "SELECT i.ord, i.id AS iid, i.text, i.flags, i.gold, r.*, c.label AS c_label, c.confidence AS c_conf,"
            " c.distribution AS c_dist, c.vote_share AS c_share, c.entropy AS c_entropy, c.divergence AS c_div,"
            " c.disagree AS c_disagree, c.member_labels AS c_members, c.calibrated AS c_cal, c.raw_label AS c_raw"
            " FROM items i JOIN results r ON r.item_id = i.id LEFT JOIN combined c ON c.item_id = i.id"
            " ORDER BY i.ord, r.member"
        )
        current: list[sqlite3.Row] = []
        while True:
            rows = cur.fetchmany(batch)
            for row in rows:
                if current and current[0]["ord"] != row["ord"]:
                    yield decode_item_rows(current)
                    current = []
                current.append(row)
            if not rows:
                break
        if current:
            yield decode_item_rows(current)


def sync_reviews(store: RunStore, put: Iterable[Review], remove: Iterable[tuple[str, str]]) -> tuple[int, int]:
    """`RunStore.sync_reviews` as a function (the review importer calls it so)."""
    return store.sync_reviews(put, remove)


def _final(retry_failed: bool) -> tuple[str, ...]:
    """The result statuses that end an item's labeling (a failure does not when it is to be retried)."""
    return ("labeled", "skipped") if retry_failed else ("labeled", "skipped", "failed")
