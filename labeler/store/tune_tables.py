"""The run store's quality-loop tables (issue 12): the bias correction applied to the run, and the tunings.

    corrections   the correction every combine applies (one active row; earlier ones kept, inactive)
    tunings       one row per `labeler tune`: its report (candidates, scores, the choice, the items used)
    meta "routing_threshold"   the low-confidence threshold `labeler relabel --target-accuracy` set, with
                  its source; RunStore.task() makes it the run's routing.low_confidence, so a plain
                  `labeler route` uses it (the manifest's config snapshot stays as the run started)

Also the manifest's "correction" and "routing_threshold" entries: manifest.json is the run's description
for people and tools, so the active correction is named there too (with its file, correction.json,
beside the run), and so is the tuned threshold.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labeler.store.base import Tables, read_manifest


@dataclass(frozen=True)
class StoredCorrection:
    """Per-label offsets added to the log-probabilities of every item's distribution."""

    kind: str
    offsets: Mapping[str, float]
    content_free: Mapping[str, float] = field(default_factory=dict)
    objective: str = ""
    source: str = ""  # what it was fitted on, in words
    fitted_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "offsets": dict(self.offsets),
            "content_free": dict(self.content_free),
            "objective": self.objective,
            "source": self.source,
            "fitted_at": self.fitted_at,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StoredCorrection:
        return cls(
            kind=str(d["kind"]),
            offsets={str(k): float(v) for k, v in d.get("offsets", {}).items()},
            content_free={str(k): float(v) for k, v in d.get("content_free", {}).items()},
            objective=str(d.get("objective", "")),
            source=str(d.get("source", "")),
            fitted_at=float(d.get("fitted_at", 0.0)),
        )


@dataclass(frozen=True)
class TunedThreshold:
    """A routing threshold set for the run, and what set it ("labeler relabel --target-accuracy 0.95")."""

    value: float
    source: str
    set_at: float = 0.0


class TuneTables(Tables):
    run_dir: Path

    def put_correction(self, c: StoredCorrection) -> None:
        """Make `c` the run's correction (the previous one stays in the table, inactive), and name it in
        manifest.json and correction.json."""
        with self.transaction():
            self.conn.execute("UPDATE corrections SET active = 0")
            self.conn.execute(
                "INSERT INTO corrections (kind, params, fitted_at, active) VALUES (?, ?, ?, 1)",
                (c.kind, json.dumps(c.to_dict()), c.fitted_at or time.time()),
            )
        _write_json(self.run_dir / "correction.json", c.to_dict())
        self.set_manifest_entry("correction", {"file": "correction.json", **c.to_dict()})

    def correction(self) -> StoredCorrection | None:
        row = self.conn.execute("SELECT params FROM corrections WHERE active = 1 ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else StoredCorrection.from_dict(json.loads(row[0]))

    def put_tuning(self, report: Mapping[str, Any]) -> int:
        """Store one tuning's report (JSON-able); returns its id."""
        with self.transaction():
            cur = self.conn.execute(
                "INSERT INTO tunings (created, report) VALUES (?, ?)", (time.time(), json.dumps(report))
            )
        return int(cur.lastrowid or 0)

    def tuning(self) -> dict[str, Any] | None:
        """The latest tuning's report."""
        row = self.conn.execute("SELECT report FROM tunings ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def put_routing_threshold(self, t: TunedThreshold) -> None:
        """Make `t` the run's routing.low_confidence (applied by RunStore.task()), named in manifest.json."""
        entry = {"low_confidence": t.value, "source": t.source, "set_at": t.set_at or time.time()}
        self.set_meta("routing_threshold", json.dumps(entry))
        self.set_manifest_entry("routing_threshold", entry)

    def routing_threshold(self) -> TunedThreshold | None:
        raw = self.get_meta("routing_threshold")
        if raw is None:
            return None
        d = json.loads(raw)
        return TunedThreshold(float(d["low_confidence"]), str(d["source"]), float(d.get("set_at", 0.0)))

    def set_manifest_entry(self, key: str, value: Any) -> None:
        """Set one top-level entry of manifest.json (atomically: written beside it, then renamed)."""
        manifest = read_manifest(self.run_dir)
        manifest[key] = value
        _write_json(self.run_dir / "manifest.json", manifest)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)
