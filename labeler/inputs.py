"""Reading the files a user hands us: CSV, TSV, JSONL or Parquet, streamed row by row.

`read_rows` reads the corpus: each row becomes an Item, or a skip with a reason (empty text).
`read_records` reads any other table (few-shot examples, human labels) as text values. Problems raise
InputError on one line naming the file, the line (or row) and the fix: a missing file or column, an
empty file, a line that is not JSON, a CSV line the csv module cannot split, a Parquet file that
pyarrow cannot read. A byte-order mark is not part of the first column (or the first JSON line).
Bytes that are not UTF-8 are replaced (U+FFFD) and the item is flagged `invalid-utf8`, so no row is lost.
A quoted corpus field whose lines read as further rows of the file (an unterminated quote swallowing
them) is refused in strict mode and a warning otherwise; see `_Swallowed`.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Callable, Iterator
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


def _one_line(exc: BaseException, n: int = 160) -> str:
    s = " ".join(str(exc).split())
    return s if len(s) <= n else s[: n - 1] + "…"


def _records(
    path: Path, what: str = "input.path", end: list[int] | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each row of `path`; for Parquet the number is the row's. `what`
    names the setting or option that pointed at the file, for messages. For CSV/TSV, `end[0]` (if
    given) is set to the line the record ends on before it is yielded (a quoted field may span lines)."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        # utf-8-sig: a byte-order mark before the first line is not part of the JSON
        with path.open(encoding="utf-8-sig", errors="surrogateescape") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except (json.JSONDecodeError, RecursionError) as exc:
                    why = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
                    raise InputError(f"{path.name} line {lineno} is not valid JSON ({why}); fix or remove it") from None
                if not isinstance(rec, dict):
                    raise InputError(f"{path.name} line {lineno} is not a JSON object; write one {{...}} per line")
                yield lineno, rec
    elif suffix == ".parquet":
        yield from _parquet_records(path, what)
    elif suffix in (".csv", ".tsv", ".txt"):
        # utf-8-sig: a byte-order mark (as spreadsheet programs write) is not part of the first column name
        with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
            start = 1
            try:
                reader.fieldnames  # noqa: B018 (reads the header, so line numbers count from it)
                while True:
                    start = reader.line_num + 1  # where the record starts (it may span lines)
                    rec = next(reader, None)
                    if rec is None:
                        return
                    if end is not None:
                        end[:] = [reader.line_num]
                    yield start, rec
            except csv.Error as exc:
                raise InputError(
                    f"{path.name} line {start} cannot be read as {suffix[1:].upper()} ({_one_line(exc)}); "
                    "fix that line (quote fields that hold the delimiter, a quote or a line break)"
                ) from None
    else:
        raise InputError(
            f"{path.name}: unknown format {suffix!r}; use .csv, .tsv, .jsonl or .parquet (fix {what})"
        )


def _parquet_records(path: Path, what: str) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 0
    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=2048):
            for rec in batch.to_pylist():
                n += 1
                yield n, rec
    except (pa.ArrowException, OSError) as exc:  # corrupt or truncated file, not Parquet at all
        where = f" after row {n}" if n else ""
        raise InputError(
            f"{path.name} is not a readable Parquet file{where} ({_one_line(exc)}); "
            f"write it again or point {what} at another file"
        ) from None


def _text(value: Any) -> str:
    """A record's value as text: None is "", JSON objects and lists stay JSON, bad UTF-8 is replaced."""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return _clean(value)[0]


def read_records(path: Path, *, what: str) -> Iterator[tuple[int, dict[str, str]]]:
    """Stream the records of a CSV, TSV, JSONL or Parquet file as (line number, {column: text}).

    For the files a user hands us besides the corpus: few-shot examples, human labels. `what` names
    the setting or option that pointed at the file (e.g. "task.examples", "--human"); every error is
    an InputError on one line naming the file, the line number and the fix. A byte-order mark is
    skipped; a CSV line with more fields than the header is an error (a field that needed quotes);
    missing fields are "". An empty file yields nothing."""
    if not path.is_file():
        raise InputError(f"{what}: file {path} not found; fix the path")
    for lineno, rec in _records(path, what):
        if None in rec:  # csv.DictReader puts the fields beyond the header under None
            raise InputError(
                f"{path.name} line {lineno} has more fields than the header; quote fields that hold the delimiter"
            )
        yield lineno, {str(k): _text(v) for k, v in rec.items()}


_SHAPE = re.compile(r"[^\W\d_]+|\d+")


def _shape(s: str) -> str:
    """An id's shape: runs of letters → a, runs of digits → 9, the rest kept ("g12" → "a9", "doc-7" → "a-9")."""
    return _SHAPE.sub(lambda m: "9" if m.group()[0].isdigit() else "a", s)


@dataclass
class _Swallowed:
    """Lines inside a quoted corpus field that read as further rows of this file.

    A quoted field may span lines (legal CSV), but an unterminated quote swallows the rows after it
    into one text. A line inside a multi-line field is suspect when, split as a line of this file, it
    has at least the header's number of fields and its id field has the shape of the row's own id
    (letters/digits pattern, no spaces). Suspects whose id turns out to be a row of its own (the text
    merely quotes such a line) are dropped by a second pass that runs only when there are suspects."""

    path: Path
    delimiter: str
    id_column: str
    header: list[str]
    found: list[tuple[int, str, list[tuple[int, str]]]]  # (row's line, row's id, [(line, id it reads as)])

    def check(self, start: int, rec: dict[str, Any], item_id: str) -> None:
        k, width, own = self.header.index(self.id_column), len(self.header), _shape(item_id)
        line, hits = start, []
        for value in rec.values():
            parts = value.split("\n") if isinstance(value, str) else [""]
            for i, part in enumerate(parts[1:], 1):
                fields = _split_line(part.rstrip("\r"), self.delimiter)
                tok = fields[k].strip() if len(fields) >= max(width, 2) else ""
                plausible = tok and tok != item_id and len(tok) <= 100 and not any(c.isspace() for c in tok)
                if plausible and _shape(tok) == own:
                    hits.append((line + i, tok))
            line += len(parts) - 1
        if hits:
            self.found.append((start, item_id, hits))

    def finish(self, *, strict: bool, warn: Callable[[str], None] | None) -> None:
        if not self.found:
            return
        suspects = {tok for _, _, hits in self.found for _, tok in hits}
        real = {rec.get(self.id_column) for _, rec in _records(self.path) if rec.get(self.id_column) in suspects}
        rows = [(s, i, [h for h in hits if h[1] not in real]) for s, i, hits in self.found]
        rows = [r for r in rows if r[2]]
        if not rows:
            return
        n = sum(len(h) for _, _, h in rows)
        where = "; ".join(
            f"line {s}: the quoted text of {_visible(i)} runs on over line{'s' if len(h) > 1 else ''} "
            f"{h[0][0]}{f'–{h[-1][0]}' if len(h) > 1 else ''}, which read{'s' if len(h) == 1 else ''} as "
            f"row{'s' if len(h) > 1 else ''} {', '.join(_visible(t) for _, t in h[:5])}{' …' if len(h) > 5 else ''}"
            for s, i, h in rows[:3]
        ) + (f"; and {len(rows) - 3} more such rows" if len(rows) > 3 else "")
        lines = f"{n} line{'s' if n > 1 else ''}"
        head = f"{self.path.name}: {lines} inside quoted fields read as rows of the file ({where})"
        if strict:
            raise InputError(
                f"{head}; an unterminated quote? close it, or pass --no-strict to keep those lines as text"
            )
        if warn is not None:
            warn(f"{head}; kept as text (--no-strict): {n} row{'s' if n > 1 else ''} may be missing")


def _split_line(line: str, delimiter: str) -> list[str]:
    try:
        return next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        return []


def warn_on_stderr(message: str) -> None:
    """The `warn` that read_rows' callers pass: one line on stderr."""
    print(f"warning: {message}", file=sys.stderr)


def _visible(s: str) -> str:
    from labeler.safe_text import visible_line

    return visible_line(s)


def read_rows(
    path: Path,
    *,
    id_column: str,
    text_column: str,
    gold_column: str | None = None,
    strict: bool = True,
    warn: Callable[[str], None] | None = None,
) -> Iterator[Row]:
    """Stream the rows of `path`. An empty `id_column` numbers rows 1, 2, ... as ids.

    A CSV/TSV whose quoted fields hold lines that read as rows of the file (an unterminated quote)
    raises InputError after the last row with `strict` (the default: the ingest that reads the rows is
    one transaction, so nothing is kept); without it, `warn` gets one line naming the lines."""
    if not path.exists():
        raise InputError(f"input file {path} not found; set input.path in the config or pass --input")
    if path.stat().st_size == 0:
        raise InputError(f"input file {path} is empty; point input.path at the corpus to label")
    n = 0
    end = [0]
    tabular = path.suffix.lower() in (".csv", ".tsv", ".txt")
    swallowed: _Swallowed | None = None
    for n, (lineno, rec) in enumerate(_records(path, end=end), 1):
        if None in rec:  # csv.DictReader puts the fields beyond the header under None: never drop them
            raise InputError(
                f"{path.name} line {lineno} has more fields than the header; quote fields that hold the delimiter"
            )
        if n == 1:
            cols = list(rec)
            for key, col in (("text_column", text_column), ("id_column", id_column), ("gold_column", gold_column)):
                if col and col not in rec:
                    raise InputError(
                        f"column {col!r} is not in {path.name} (columns: {', '.join(map(str, cols))}); "
                        f"set input.{key}" + ("" if key != "id_column" else ' (or to "" to number rows)')
                    )
            if tabular and id_column:
                delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
                swallowed = _Swallowed(path, delimiter, id_column, [str(c) for c in cols], [])
        text, bad_text = _clean(rec.get(text_column))
        raw_id = rec.get(id_column) if id_column else n
        item_id, bad_id = _clean(raw_id)
        if not item_id.strip():
            raise InputError(f'{path.name} row {n} has an empty id; fill it in or set input.id_column = ""')
        flags = ("invalid-utf8",) if bad_text or bad_id else ()
        gold = None
        if gold_column and rec.get(gold_column) not in (None, ""):
            gold = _clean(rec.get(gold_column))[0]
        if swallowed is not None and end[0] > lineno:  # a record over several lines: did a quote swallow rows?
            swallowed.check(lineno, rec, item_id)
        item = Item(id=item_id.strip(), text=text, row=n, flags=flags)
        yield Row(item=item, gold=gold, skip=None if text.strip() else "empty or whitespace-only text")
    if n == 0:
        raise InputError(f"input file {path} has no rows; point input.path at the corpus to label")
    if swallowed is not None:
        swallowed.finish(strict=strict, warn=warn)
