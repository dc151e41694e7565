"""Exporting a run: one row per item, streamed to CSV, JSONL or Parquet.

Once human reviews were imported, the export is the final dataset (labeler.review.dataset): the
human label where reviewed, else the LLM's, with `source` and the routing reasons.

Columns: id, label, confidence, status, reason, then provenance (member, model, template_hash,
run_id, cached, tokens, cost), the per-method confidences, flags, the ensemble's columns, raw_label and
corrected (the label before the run's bias correction, and whether the correction changed it), gold
when the input had it, and raw (the model's output, for failed items). Every row has the same columns.
With several members, the row carries each member's label as label__<member> as well.

Multi-label and span tasks (labeler.tasktypes): the label columns (label, ensemble_label, raw_label,
label__<member>, and in the final dataset llm_label and human_label) hold the annotation itself — in
JSONL and Parquet a list column (multi_label: a list of label names; spans: a list of {start, end, type,
text} structs, code-point offsets), in CSV one cell (label names joined by "; ", spans as a JSON list).
The run store keeps them encoded (`TaskType.encode`); `list_rows` decodes them for the file. Their rows
also carry element_confidences: a JSON object, element -> confidence (`{"label sport": 0.4}`).
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from labeler.errors import LabelerError, RunStoreError
from labeler.record import records
from labeler.safe_text import csv_cell, visible
from labeler.store import RunStore
from labeler.tasktypes import TaskType
from labeler.tasktypes.registry import for_task

FORMATS = ("csv", "jsonl", "parquet")
NUMERIC_COLUMNS = frozenset(
    {"confidence", "cost", "ensemble_confidence", "vote_share", "entropy", "divergence", "calibrated_confidence"}
)


def item_rows(store: RunStore, *, with_text: bool = False) -> Iterator[dict[str, Any]]:
    """The export's row of each ItemRecord (labeler.record): the record written out, nothing decided here."""
    manifest = store.manifest
    members = [m["name"] for m in manifest["members"]]
    has_gold = bool(manifest.get("config", {}).get("input", {}).get("gold_column"))
    run_id = manifest["run_id"]
    elementwise = store.task().kind.elementwise
    for rec in records(store):
        r = rec.primary
        c = rec.combined
        out: dict[str, Any] = {
            "id": rec.id,
            "label": rec.label,
            "confidence": rec.confidence,
            "status": rec.status,
            "reason": r.reason,
            "member": r.member,
            "model": r.model,
            "template_hash": rec.template_hashes.get(r.member, ""),
            "run_id": run_id,
            "cached": rec.cached,
            "input_tokens": rec.input_tokens,
            "output_tokens": rec.output_tokens,
            "cost": rec.cost,
            "flags": ",".join(rec.flags),
        }
        out.update({f"conf_{m}": v for m, v in rec.method_confidences().items()})
        out.update(
            {
                "ensemble_label": None if c is None else c.label,
                "ensemble_confidence": None if c is None else c.confidence,
                "vote_share": None if c is None else c.vote_share,
                "entropy": None if c is None else c.entropy,
                "divergence": None if c is None else c.divergence,
                "disagree": None if c is None else c.disagree,
                "calibrated_confidence": rec.calibrated_confidence,
                "confidence_source": rec.confidence_source,
                # the label before the run's bias correction (labeler.confidence.correct), and whether it changed
                "raw_label": c.raw_label if c is not None and c.raw_label is not None else rec.label,
                "corrected": c is not None and c.raw_label is not None and c.raw_label != rec.label,
            }
        )
        if len(members) > 1:
            out.update({f"label__{name}": rec.member_labels.get(name) for name in members})
        if has_gold or rec.gold is not None:
            out["gold"] = rec.gold
        if with_text:
            out["text"] = rec.text
        if elementwise:  # multi_label, spans: each element's confidence (labeler.confidence.elements), JSON
            conf = dict(c.distribution) if c is not None and c.distribution else None
            out["element_confidences"] = None if conf is None else json.dumps(conf, ensure_ascii=False)
        out["raw"] = r.raw if rec.status == "failed" else None
        yield out


LABEL_COLUMNS = frozenset({"label", "ensemble_label", "raw_label", "llm_label", "human_label"})


def _is_label_column(name: str) -> bool:
    return name in LABEL_COLUMNS or name.startswith("label__")


def list_rows(rows: Iterable[dict[str, Any]], kind: TaskType, *, cells: bool = False) -> Iterator[dict[str, Any]]:
    """`rows` with their label columns decoded from the store's text to plain lists (JSON's shape of
    `TaskType.encode`: names, or start/end/type/text objects); None stays None. `cells`: as CSV cells for
    people instead (label names joined by "; ", spans as one JSON list)."""
    join = cells and kind.name == "multi_label"
    for row in rows:
        out = dict(row)
        for k, v in row.items():
            if v is None or not _is_label_column(k):
                continue
            try:
                plain = json.loads(str(kind.encode(kind.decode(v))))
            except ValueError as exc:  # a label text no stage of labeler wrote (edited by hand, a foreign import)
                fix = "correct the review or result that holds it"
                raise RunStoreError(f"item {row.get('id')!r}, column {k}: {exc}; {fix}") from None
            out[k] = "; ".join(plain) if join else json.dumps(plain, ensure_ascii=False) if cells else plain
        yield out


def write_rows(rows: Iterator[dict[str, Any]], out: Path, fmt: str, *, list_item: Any = None) -> int:
    """Write dict rows to `out` in `fmt`, streaming. Returns the number of rows. `list_item`: the Arrow type of
    one element of the label columns when they hold lists (Parquet's schema, even where a chunk has none)."""
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
                # no formulas for spreadsheets, no terminal escapes for `cat` (the store keeps the text verbatim)
                w.writerow({k: csv_cell(visible(v) if isinstance(v, str) else v) for k, v in row.items()})
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
                    writer = pq.ParquetWriter(out, _settle_nulls(table.schema, list_item))
                writer.write_table(table.cast(writer.schema))
                n += len(chunk)
        finally:
            if writer is not None:
                writer.close()
    return n


def _settle_nulls(schema: Any, list_item: Any = None) -> Any:
    """A column that is empty in the first chunk has Arrow type null, to which later values cannot be
    cast: make it float64 (confidences, cost) or string (everything else); label columns of lists get
    the list type of `list_item` (also where the first chunk held only empty lists)."""
    import pyarrow as pa

    fields = []
    for f in schema:
        if list_item is not None and _is_label_column(f.name):
            f = pa.field(f.name, pa.list_(list_item))
        elif pa.types.is_null(f.type):
            numeric = f.name in NUMERIC_COLUMNS or f.name.startswith("conf_")
            f = pa.field(f.name, pa.float64() if numeric else pa.string())
        fields.append(f)
    return pa.schema(fields)


def export_run(
    run_dir: Path, out: Path, fmt: str | None = None, *, with_text: bool = False, consensus: str | None = None
) -> int:
    """`consensus`: an aggregation method (labeler.aggregate) deciding each item's label from every annotator."""
    fmt = fmt or out.suffix.lstrip(".").lower()
    store = RunStore.open(run_dir)
    try:
        rows: Iterator[dict[str, Any]] = item_rows(store, with_text=with_text)
        if store.reviews() or consensus:  # reviews or a consensus: the final dataset, with a source column
            from labeler.review.dataset import with_human_labels

            agg = None
            if consensus:
                from labeler.aggregate.collect import encoded_consensus

                agg = encoded_consensus(store, consensus)
            rows = with_human_labels(store, rows, consensus=agg, method=consensus)
        return write_annotated(rows, out, fmt, for_task(store.task()))
    finally:
        store.close()


def write_annotated(rows: Iterator[dict[str, Any]], out: Path, fmt: str, kind: TaskType) -> int:
    """`write_rows` of export or final-dataset rows of a task of type `kind`: label columns as lists for a
    multi-label or span task (the export and `labeler review merge` write the same columns)."""
    if not kind.elementwise:
        return write_rows(rows, out, fmt)
    listed = list_rows(rows, kind, cells=fmt == "csv")
    return write_rows(listed, out, fmt, list_item=arrow_item(kind) if fmt == "parquet" else None)


def arrow_item(kind: TaskType) -> Any:
    """The Arrow type of one element of an annotation's list: a label name, or a span struct."""
    import pyarrow as pa

    span = pa.struct([("start", pa.int64()), ("end", pa.int64()), ("type", pa.string()), ("text", pa.string())])
    return {"multi_label": pa.string(), "spans": span}[kind.name]
