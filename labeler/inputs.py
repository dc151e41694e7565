"""Reading the corpus: CSV, JSONL or Parquet, streamed row by row, with answers for bad input.

Each row becomes an Item, or a skip with a reason (empty text). Problems that make the whole file
unusable (missing file or column, empty file) raise InputError naming the fix. Bytes that are not
UTF-8 are replaced (U+FFFD) and the item is flagged `invalid-utf8`, so no row is lost.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labeler.errors import InputError
from labeler.types import Item

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass(frozen=True)
class Row:
    """A row as read: the item, its gold label if the file has one, and why it is skipped, if it is."""

    item: Item
    gold: str | None = None
    skip: str | None = None


def _clean(value: Any) -> tuple[str, bool]:
    """str(value) with invalid UTF-8 (read as surrogate escapes) replaced; and whether any was."""
    s = "" if value is None else str(value)
    try:
        s.encode("utf-8")
        return s, False
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "replace"), True


def _records(path: Path) -> Iterator[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        with path.open(encoding="utf-8", errors="surrogateescape") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(
                        f"{path.name} line {lineno} is not valid JSON ({exc.msg}); fix or remove it"
                    ) from None
                if not isinstance(rec, dict):
                    raise InputError(f"{path.name} line {lineno} is not a JSON object")
                yield rec
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=2048):
            yield from batch.to_pylist()
    elif suffix in (".csv", ".tsv", ".txt"):
        # utf-8-sig: a byte-order mark (as spreadsheet programs write) is not part of the first column name
        with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
            yield from reader
    else:
        raise InputError(f"{path.name}: unknown input format {suffix!r}; use .csv, .tsv, .jsonl or .parquet")


def read_rows(path: Path, *, id_column: str, text_column: str, gold_column: str | None = None) -> Iterator[Row]:
    """Stream the rows of `path`. An empty `id_column` numbers rows 1, 2, ... as ids."""
    if not path.exists():
        raise InputError(f"input file {path} not found; set input.path in the config or pass --input")
    if path.stat().st_size == 0:
        raise InputError(f"input file {path} is empty; point input.path at the corpus to label")
    n = 0
    for n, rec in enumerate(_records(path), 1):
        if n == 1:
            cols = list(rec)
            for key, col in (("text_column", text_column), ("id_column", id_column), ("gold_column", gold_column)):
                if col and col not in rec:
                    raise InputError(
                        f"column {col!r} is not in {path.name} (columns: {', '.join(map(str, cols))}); "
                        f"set input.{key}" + ("" if key != "id_column" else ' (or to "" to number rows)')
                    )
        text, bad_text = _clean(rec.get(text_column))
        raw_id = rec.get(id_column) if id_column else n
        item_id, bad_id = _clean(raw_id)
        if not item_id.strip():
            raise InputError(f'{path.name} row {n} has an empty id; fill it in or set input.id_column = ""')
        flags = ("invalid-utf8",) if bad_text or bad_id else ()
        gold = None
        if gold_column and rec.get(gold_column) not in (None, ""):
            gold = _clean(rec.get(gold_column))[0]
        item = Item(id=item_id.strip(), text=text, row=n, flags=flags)
        yield Row(item=item, gold=gold, skip=None if text.strip() else "empty or whitespace-only text")
    if n == 0:
        raise InputError(f"input file {path} has no rows; point input.path at the corpus to label")
