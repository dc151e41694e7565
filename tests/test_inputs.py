"""Reading the corpus: CSV, TSV, JSONL and Parquet; answers for bad input that name the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labeler.errors import InputError
from labeler.inputs import read_rows

RECORDS = [
    {"id": "a1", "text": "Stocks rallied.", "gold": "business"},
    {"id": "a2", "text": "A late goal.", "gold": "sport"},
    {"id": "a3", "text": "   \n\t ", "gold": ""},
    {"id": "a4", "text": 'New chip, 3nm, "fast"\nsecond line', "gold": "tech"},
]


def _write(path: Path, records: list[dict]) -> Path:
    fmt = path.suffix
    if fmt == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    elif fmt == ".parquet":
        pq.write_table(pa.Table.from_pylist(records), path)
    else:
        import csv

        with path.open("w", encoding="utf-8", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(records[0]), delimiter="\t" if fmt == ".tsv" else ",")
            w.writeheader()
            w.writerows(records)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_every_format_reads_the_same_rows(tmp_path: Path, suffix: str) -> None:
    path = _write(tmp_path / f"items{suffix}", RECORDS)
    rows = list(read_rows(path, id_column="id", text_column="text", gold_column="gold"))
    assert [r.item.id for r in rows] == ["a1", "a2", "a3", "a4"]
    assert [r.item.row for r in rows] == [1, 2, 3, 4]
    assert [r.item.text for r in rows] == [rec["text"] for rec in RECORDS]
    assert [r.gold for r in rows] == ["business", "sport", None, "tech"]  # empty gold is no gold
    assert [r.skip for r in rows] == [None, None, "empty or whitespace-only text", None]
    assert all(r.item.flags == () for r in rows)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_missing_column_names_the_config_key(tmp_path: Path, suffix: str) -> None:
    path = _write(tmp_path / f"items{suffix}", RECORDS)
    with pytest.raises(InputError) as err:
        list(read_rows(path, id_column="id", text_column="body"))
    msg = str(err.value)
    assert "'body'" in msg and "input.text_column" in msg and "id, text, gold" in msg
    with pytest.raises(InputError, match=r'input\.id_column \(or to "" to number rows\)'):
        list(read_rows(path, id_column="doc_id", text_column="text"))
    with pytest.raises(InputError, match=r"input\.gold_column"):
        list(read_rows(path, id_column="id", text_column="text", gold_column="label"))


def test_empty_file_and_header_only_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InputError, match="is empty"):
        list(read_rows(empty, id_column="id", text_column="text"))
    header = tmp_path / "header.csv"
    header.write_text("id,text\n")
    with pytest.raises(InputError, match="has no rows"):
        list(read_rows(header, id_column="id", text_column="text"))
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n\n")
    with pytest.raises(InputError, match="has no rows"):
        list(read_rows(blank, id_column="id", text_column="text"))


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"input\.path"):
        list(read_rows(tmp_path / "nope.csv", id_column="id", text_column="text"))
    odd = tmp_path / "items.xlsx"
    odd.write_bytes(b"PK\x03\x04")
    with pytest.raises(InputError, match=r"\.csv, \.tsv, \.jsonl or \.parquet"):
        list(read_rows(odd, id_column="id", text_column="text"))


def test_bad_jsonl_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text('{"id": "1", "text": "ok"}\n{"id": "2", "text": \n')
    with pytest.raises(InputError, match="line 2 is not valid JSON"):
        list(read_rows(path, id_column="id", text_column="text"))
    path.write_text('{"id": "1", "text": "ok"}\n["not", "an", "object"]\n')
    with pytest.raises(InputError, match="line 2 is not a JSON object"):
        list(read_rows(path, id_column="id", text_column="text"))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_invalid_utf8_is_replaced_and_flagged(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"items{suffix}"
    bad = b"caf\xe9 \xff ok"  # Latin-1 bytes, not UTF-8
    if suffix == ".csv":
        path.write_bytes(b"id,text\n1,good text\n2," + bad + b"\n")
    else:
        path.write_bytes(b'{"id": "1", "text": "good text"}\n{"id": "2", "text": "' + bad + b'"}\n')
    rows = list(read_rows(path, id_column="id", text_column="text"))
    assert [r.item.flags for r in rows] == [(), ("invalid-utf8",)]
    assert rows[1].item.text == "caf\ufffd \ufffd ok"
    assert rows[1].skip is None
    rows[1].item.text.encode("utf-8")  # safe to store and send


def test_id_column_empty_numbers_rows(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text("text\nfirst\n\nsecond\nthird\n")  # csv skips the blank line
    rows = list(read_rows(path, id_column="", text_column="text"))
    assert [(r.item.id, r.item.text) for r in rows] == [("1", "first"), ("2", "second"), ("3", "third")]


def test_empty_id_is_an_error_and_ids_are_stripped(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text("id,text\n x1 ,a\n,b\n")
    rows = read_rows(path, id_column="id", text_column="text")
    assert next(rows).item.id == "x1"
    with pytest.raises(InputError, match=r'row 2 has an empty id; fill it in or set input\.id_column = ""'):
        next(rows)


def test_non_string_values_become_strings(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text('{"id": 7, "text": 3.5}\n{"id": 8, "text": null}\n')
    rows = list(read_rows(path, id_column="id", text_column="text"))
    assert [(r.item.id, r.item.text, r.skip is None) for r in rows] == [("7", "3.5", True), ("8", "", False)]


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("id,text\nr1,hello\n".encode("utf-8-sig"))
    [row] = read_rows(path, id_column="id", text_column="text")
    assert (row.item.id, row.item.text, row.item.flags) == ("r1", "hello", ())


def test_rows_stream_lazily(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text('{"id": "1", "text": "a"}\n' + "this line is broken\n")
    rows = read_rows(path, id_column="id", text_column="text")
    assert next(rows).item.id == "1"  # the first row is there before the bad line is read
    with pytest.raises(InputError):
        next(rows)


# --- files that are broken in ways a user meets -------------------------------------------------
def test_a_corrupt_parquet_file_is_one_line_naming_the_file(tmp_path: Path) -> None:
    garbage = tmp_path / "corpus.parquet"
    garbage.write_bytes(b"PAR1 this is not parquet at all PAR1")
    good = _write(tmp_path / "good.parquet", RECORDS * 500)
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for path in (garbage, truncated):
        with pytest.raises(InputError) as err:
            list(read_rows(path, id_column="id", text_column="text"))
        message = str(err.value)
        assert message.startswith(f"{path.name} is not a readable Parquet file")
        assert "input.path" in message and "\n" not in message


def test_a_byte_order_mark_before_the_first_json_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + _write(tmp_path / "x.jsonl", RECORDS[:2]).read_bytes())
    rows = list(read_rows(path, id_column="id", text_column="text"))
    assert [r.item.id for r in rows] == ["a1", "a2"]


def test_a_csv_line_the_csv_module_rejects_names_the_line(tmp_path: Path) -> None:
    import csv

    path = tmp_path / "c.csv"
    path.write_text("id,text\na1,short\na2,a much longer text than the limit\n", encoding="utf-8")
    old = csv.field_size_limit(20)
    try:
        with pytest.raises(InputError, match=r"^c\.csv line 3 cannot be read as CSV .*fix that line"):
            list(read_rows(path, id_column="id", text_column="text"))
    finally:
        csv.field_size_limit(old)


# --- read_records: the reader for every other file a user hands us -------------------------------
def test_read_records_reads_every_format_as_text_with_line_numbers(tmp_path: Path) -> None:
    from labeler.inputs import read_records

    for suffix in (".csv", ".tsv", ".jsonl", ".parquet"):
        path = _write(tmp_path / f"h{suffix}", RECORDS)
        recs = list(read_records(path, what="--human"))
        assert [r for _, r in recs] == [{k: str(v) for k, v in r.items()} for r in RECORDS], suffix
        if suffix == ".csv":  # a4's text spans two lines: line numbers are the file's
            assert [n for n, _ in recs] == [2, 3, 4, 6]
        if suffix in (".jsonl", ".parquet"):
            assert [n for n, _ in recs] == [1, 2, 3, 4]


def test_read_records_skips_a_bom_and_fills_missing_fields(tmp_path: Path) -> None:
    from labeler.inputs import read_records

    path = tmp_path / "h.csv"
    path.write_bytes("\ufeffid,label\nd1,sport\nd2\n".encode())
    assert list(read_records(path, what="--human")) == [
        (2, {"id": "d1", "label": "sport"}),
        (3, {"id": "d2", "label": ""}),
    ]
    jl = tmp_path / "h.jsonl"
    jl.write_bytes(b'\xef\xbb\xbf{"id": "d1", "label": "sport", "n": 3, "x": null}\n')
    assert list(read_records(jl, what="--human")) == [(1, {"id": "d1", "label": "sport", "n": "3", "x": ""})]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("h.jsonl", '{"id": "d1"}\n\n{"id": "d2",\n', r"^h\.jsonl line 3 is not valid JSON"),
        ("h.jsonl", '{"id": "d1"}\n["d2"]\n', r"^h\.jsonl line 2 is not a JSON object"),
        ("h.csv", "id,label\nd1,sport\nd2,sport,extra\n", r"^h\.csv line 3 has more fields than the header"),
        ("h.xlsx", "x", r"unknown format '\.xlsx'.*fix --human"),
    ],
)
def test_read_records_errors_are_one_line_naming_file_and_line(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    from labeler.inputs import read_records

    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message) as err:
        list(read_records(path, what="--human"))
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match=r"--human: file .*nope\.csv not found"):
        list(read_records(tmp_path / "nope.csv", what="--human"))


def test_a_swallowing_quote_is_found_in_a_tsv_with_the_id_column_not_first(tmp_path: Path) -> None:
    # columns lang, id, text: the id field of the swallowed lines is the second one, shaped like doc-6's
    path = tmp_path / "c.tsv"
    path.write_text('lang\tid\ttext\nen\tdoc-6\t"opened here\nen\tdoc-7\tswallowed\nen\tdoc-8\tand this\n', "utf-8")
    with pytest.raises(InputError, match=r"c\.tsv: 2 lines .*\(line 2: the quoted text of doc-6 .* rows doc-7, doc-8"):
        list(read_rows(path, id_column="id", text_column="text"))


def test_rows_numbered_by_position_are_not_checked_for_swallowed_rows(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text('text\n"one\n2,two\n', encoding="utf-8")
    said: list[str] = []
    rows = list(read_rows(path, id_column="", text_column="text", warn=said.append))
    assert [r.item.text for r in rows] == ["one\n2,two\n"] and said == []
