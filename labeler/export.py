"""Exporting a run: one row per item, streamed to CSV, JSONL or Parquet.

Once human reviews were imported, the export is the final dataset (labeler.review.tools.final_rows): the
human label where reviewed, else the LLM's, with `source` and the routing reasons.

Columns: id, label, confidence, status, reason, then provenance (member, model, template_hash,
run_id, cached, tokens, cost), the per-method confidences, flags, gold when the input had it, and
raw (the model's output, for failed items). Every row has the same columns.
With several members, the row carries each member's label as label__<member> as well.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from labeler.confidence.ensemble import combined_columns, has_combined
from labeler.config import CONFIDENCE_METHODS
from labeler.errors import LabelerError
from labeler.store import RunStore

FORMATS = ("csv", "jsonl", "parquet")
NUMERIC_COLUMNS = frozenset(
    {"confidence", "cost", "ensemble_confidence", "vote_share", "entropy", "divergence", "calibrated_confidence"}
)


def item_rows(store: RunStore, *, with_text: bool = False) -> Iterator[dict[str, Any]]:
    manifest = store.manifest
    hashes = {m["name"]: m["template_hash"] for m in manifest["members"]}
    primary = manifest["members"][0]["name"]
    multi = len(hashes) > 1
    # every row has the same keys (CSV and Parquet take their columns from the first row)
    has_gold = bool(manifest.get("config", {}).get("input", {}).get("gold_column"))
    ensemble = has_combined(store)
    for _, group in itertools.groupby(store.iter_results(), key=lambda r: r["item_id"]):
        rows = {r["member"]: r for r in group}
        r = rows.get(primary) or next(iter(rows.values()))
        dists = json.loads(r["distributions"])
        out: dict[str, Any] = {
            "id": r["item_id"],
            "label": r["label"],
            "confidence": r["confidence"],
            "status": r["status"],
            "reason": r["reason"],
            "member": r["member"],
            "model": r["model"],
            "template_hash": hashes.get(r["member"], ""),
            "run_id": manifest["run_id"],
            "cached": bool(r["cached"]),
            "input_tokens": r["input_tokens"],
            "output_tokens": r["output_tokens"],
            "cost": r["cost"],
            "flags": r["flags"],
        }
        for m in CONFIDENCE_METHODS:
            d = dists.get(m)
            out[f"conf_{m}"] = None if d is None or r["label"] is None else d.get(r["label"])
        ens = combined_columns(
            store.conn.execute("SELECT * FROM combined WHERE item_id = ?", (r["item_id"],)).fetchone()
            if ensemble
            else None
        )
        out.update(ens)
        if multi and ens["ensemble_label"] is not None:  # several members: the combined label is the label
            out["label"], out["confidence"] = ens["ensemble_label"], ens["ensemble_confidence"]
        if multi:
            for name in hashes:
                out[f"label__{name}"] = rows[name]["label"] if name in rows else None
        if has_gold or r["gold"] is not None:
            out["gold"] = r["gold"]
        if with_text:
            out["text"] = r["text"]
        out["raw"] = r["raw"] if r["status"] == "failed" else None
        yield out


def write_rows(rows: Iterator[dict[str, Any]], out: Path, fmt: str) -> int:
    """Write dict rows to `out` in `fmt`, streaming. Returns the number of rows."""
    if fmt not in FORMATS:
        raise LabelerError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    first = next(rows, None)
    if first is None:
        out.write_text("", encoding="utf-8")
        return 0
    all_rows = itertools.chain([first], rows)
    columns = list(first)
    if fmt == "csv":
        with out.open("w", encoding="utf-8", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
            w.writeheader()
            for row in all_rows:
                w.writerow(row)
                n += 1
    elif fmt == "jsonl":
        with out.open("w", encoding="utf-8") as fh:
            for row in all_rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        writer = None
        try:
            while True:
                chunk = list(itertools.islice(all_rows, 5000))
                if not chunk:
                    break
                table = pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in chunk])
                if writer is None:
                    writer = pq.ParquetWriter(out, _settle_nulls(table.schema))
                writer.write_table(table.cast(writer.schema))
                n += len(chunk)
        finally:
            if writer is not None:
                writer.close()
    return n


def _settle_nulls(schema: Any) -> Any:
    """A column that is empty in the first chunk has Arrow type null, to which later values cannot be
    cast: make it float64 (confidences, cost) or string (everything else)."""
    import pyarrow as pa

    fields = []
    for f in schema:
        if pa.types.is_null(f.type):
            numeric = f.name in NUMERIC_COLUMNS or f.name.startswith("conf_")
            f = pa.field(f.name, pa.float64() if numeric else pa.string())
        fields.append(f)
    return pa.schema(fields)


def export_run(run_dir: Path, out: Path, fmt: str | None = None, *, with_text: bool = False) -> int:
    fmt = fmt or out.suffix.lstrip(".").lower()
    store = RunStore.open(run_dir)
    try:
        if store.has_table("reviews"):  # humans have labeled part of the run: the final dataset, with a source column
            from labeler.review.tools import final_rows

            return write_rows(final_rows(store, with_text=with_text), out, fmt)
        return write_rows(item_rows(store, with_text=with_text), out, fmt)
    finally:
        store.close()
