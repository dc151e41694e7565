"""Rows of run.sqlite decoded into the dataclasses of labeler.store.rows."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

from labeler.store.rows import CombinedRow, ItemRows, ResultRow


def result_row(r: sqlite3.Row) -> ResultRow:
    return ResultRow(
        item_id=r["item_id"],
        member=r["member"],
        status=r["status"],
        label=r["label"],
        confidence=r["confidence"],
        distributions=json.loads(r["distributions"] or "{}"),
        reason=r["reason"],
        raw=r["raw"],
        model=r["model"],
        input_tokens=int(r["input_tokens"]),
        output_tokens=int(r["output_tokens"]),
        cost=float(r["cost"]),
        attempts=int(r["attempts"]),
        cached=bool(r["cached"]),
        dropped=int(r["dropped"] or 0),
    )


def combined_row(r: Mapping[str, Any] | sqlite3.Row, prefix: str) -> CombinedRow:
    """A CombinedRow from a combined row (prefix "") or the c_-prefixed columns of item_rows' join."""
    names = (
        (
            "item_id",
            "label",
            "confidence",
            "distribution",
            "vote_share",
            "entropy",
            "divergence",
            "disagree",
            "member_labels",
            "calibrated",
            "raw_label",
        )
        if not prefix
        else (
            "iid",
            "c_label",
            "c_conf",
            "c_dist",
            "c_share",
            "c_entropy",
            "c_div",
            "c_disagree",
            "c_members",
            "c_cal",
            "c_raw",
        )
    )
    v = [r[n] for n in names]
    return CombinedRow(
        item_id=v[0],
        label=v[1],
        confidence=v[2],
        distribution=json.loads(v[3] or "{}"),
        vote_share=v[4],
        entropy=v[5],
        divergence=v[6],
        disagree=bool(v[7]),
        member_labels=json.loads(v[8] or "{}"),
        calibrated=v[9],
        raw_label=v[10],
    )


def item_rows(rows: list[sqlite3.Row]) -> ItemRows:
    first = rows[0]
    has_combined = first["c_dist"] is not None or first["c_members"] is not None
    return ItemRows(
        ord=int(first["ord"]),
        id=first["iid"],
        text=first["text"],
        flags=tuple(f for f in (first["flags"] or "").split(",") if f),
        gold=first["gold"] if first["gold"] not in ("",) else None,
        results={r["member"]: result_row(r) for r in rows},
        combined=combined_row(first, "c_") if has_combined else None,
    )
