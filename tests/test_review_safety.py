"""Data made safe for people's programs: no formulas in the CSVs people open in spreadsheets (OWASP's rule),
no escape sequences, CR tricks or bidi overrides reaching the terminal in the TUI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from fakes import write_task

from labeler.config import load_config
from labeler.export import export_run
from labeler.inputs import Row
from labeler.review.importer import import_reviews
from labeler.review.queue_export import export_queue
from labeler.review.router import route_run
from labeler.review.tui import review_loop
from labeler.safe_text import FORMULA_START, GUTTER, csv_cell, csv_uncell, quoted, visible, visible_line
from labeler.store import RunStore
from labeler.store.rows import QueueEntry, Review
from labeler.types import Item, ItemResult

LABELS = ("business", "sport", "tech")
EVIL_IDS = ('=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "'=quoted", "plain")  # ids are stripped on input
EVIL_TEXTS = ("=cmd|' /C calc'!A0", "  =1+1", "\t@SUM(A1)", "\r-1", "+x", "-y")


# --- spreadsheets -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("  =1", "'  =1"),  # after leading whitespace too
        ("\n@x", "'\n@x"),
        ("'=1", "''=1"),  # a quote we could mistake for ours gets one more
        ("''-1", "'''-1"),
        ("'plain", "'plain"),
        ("a=b", "a=b"),
        ("", ""),
        ("   ", "   "),
    ],
)
def test_csv_cell_follows_owasp_and_round_trips(value: str, cell: str) -> None:
    assert csv_cell(value) == cell
    assert csv_uncell(csv_cell(value)) == value
    assert csv_cell(0.5) == 0.5 and csv_cell(None) is None and csv_cell(-3) == -3  # numbers are not text


def make_run(root: Path) -> Path:
    cfg = write_task(root / "task", labels=LABELS, sections={"routing": {"low_confidence": 0.9, "audit_fraction": 0}})
    task = load_config(cfg, env={})
    manifest = {
        "run_id": "r1",
        "members": [{"name": "default", "template_hash": "x", "endpoint": {"model": "m"}}],
        "config_path": str(cfg),
        "config": dict(task.raw),
    }
    store = RunStore.create(root / "run", manifest)
    rows = [Row(Item(i, t, n + 1)) for n, (i, t) in enumerate(zip(EVIL_IDS, EVIL_TEXTS, strict=True))]
    store.ingest(rows, members=["default"])
    for i in EVIL_IDS:
        store.put_result(ItemResult(i, "default", "labeled", label="sport", confidence=0.5))
    store.close()
    route_run(root / "run")
    return root / "run"


def test_review_csv_has_no_formula_and_import_restores_ids(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    (path,) = export_queue(run_dir, tmp_path / "q.csv", "csv")
    with path.open(encoding="utf-8", newline="") as fh:
        raw = list(csv.reader(fh))
    for row in raw[1:]:
        for cell in row:
            assert cell.lstrip()[:1] not in FORMULA_START, cell  # no cell a spreadsheet would run
    assert {r[0] for r in raw[1:]} == {csv_cell(i) for i in EVIL_IDS}
    assert {r[1] for r in raw[1:]} == {csv_cell(visible(t)) for t in EVIL_TEXTS}  # CR shown as ␍ (issue 24)
    # a reviewer fills it in (as a spreadsheet saves it: the cells as they were); ids come back exact
    rows = [dict(zip(raw[0], r, strict=True)) for r in raw[1:]]
    for r in rows:
        r["human_label"], r["reviewer"] = "tech", "'=sam"  # our prefix on a cell that needed it: undone
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=raw[0])
        w.writeheader()
        w.writerows(rows)
    s = import_reviews(run_dir, path)
    assert (s.reviews, s.reviewers) == (len(EVIL_IDS), ("=sam",))
    store = RunStore.open(run_dir)
    try:
        assert set(store.reviews()) == set(EVIL_IDS)
    finally:
        store.close()


def test_export_with_text_csv_has_no_formula_but_jsonl_keeps_the_data(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    export_run(run_dir, tmp_path / "out.csv", with_text=True)
    with (tmp_path / "out.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["id"] for r in rows} == {csv_cell(i) for i in EVIL_IDS}
    assert {r["text"] for r in rows} == {csv_cell(visible(t)) for t in EVIL_TEXTS}  # CR shown as ␍ (issue 24)
    export_run(run_dir, tmp_path / "out.jsonl", with_text=True)  # a machine format: the data as it is
    got = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["id"], r["text"]) for r in got] == list(zip(EVIL_IDS, EVIL_TEXTS, strict=True))
    store = RunStore.open(run_dir)  # and the final dataset (reviews exist) goes through the same writer
    store.put_reviews([Review(EVIL_IDS[0], "ann", "tech", source="csv")])
    store.close()
    export_run(run_dir, tmp_path / "final.csv", with_text=True)
    with (tmp_path / "final.csv").open(encoding="utf-8", newline="") as fh:
        final = {r["id"]: r for r in csv.DictReader(fh)}
    assert final[csv_cell(EVIL_IDS[0])]["source"] == "human" and final["plain"]["text"] == "'-y"


# --- terminals ---------------------------------------------------------------------------------------------
def test_visible_shows_control_characters_as_symbols() -> None:
    assert visible("a\x1b[2Jb") == "a␛[2Jb"
    assert visible("x\ry\x07\x00\x7f") == "x␍y␇␀␡"
    assert visible("\x9b31m \u202eevil\u2066 \u200f") == "<U+009B>31m <U+202E>evil<U+2066> <U+200F>"
    assert visible("line 1\nline 2\tcol") == "line 1\nline 2\tcol"  # newline and tab kept
    assert visible_line("a\nb\tc") == "a␊b␉c"
    assert quoted("one\r\ntwo\n\nthree") == f"{GUTTER}one\n{GUTTER}two\n{GUTTER.rstrip()}\n{GUTTER}three"


def test_tui_prints_no_escape_sequence_and_no_line_that_looks_like_ours() -> None:
    evil = (
        "\x1b[2J\x1b[H"  # clear the screen, cursor home
        "\x1b]0;owned\x07"  # OSC: retitle the window
        "\x1b[31mred\x1b[0m"  # recolour
        "innocent\rLLM: sport (confidence 0.99)\n"  # CR: rewrite the line with a fake suggestion
        "LLM: tech (confidence 0.97)\n"  # a fake UI line on its own
        "\u202egnp.exe\n"  # bidi override
        "\x9b2J"  # C1 CSI
    )
    entry = QueueEntry("id\x1b[8m", 1, ("low_confidence",), 0.5, False, "busi\x1bness", 0.4, text=evil)
    out: list[str] = []
    prompts: list[str] = []
    keys = iter(["2", "1"])

    def read(prompt: str) -> str:
        prompts.append(prompt)
        return next(keys)

    review_loop(
        [entry],
        labels=LABELS,
        reasons=("model error\x1b]2;x\x07",),
        reviewer="r",
        save=lambda r: None,
        read=read,
        write=out.append,
    )
    shown = "\n".join(out + prompts)
    bad = [c for c in shown if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) < 0xA0 or 0x202A <= ord(c) <= 0x202E]
    assert bad == []
    lines = shown.splitlines()
    assert [ln for ln in lines if ln.startswith("LLM:")] == ["LLM: busi␛ness (confidence 0.40)"]  # only ours
    assert f"{GUTTER}␛[2J␛[H␛]0;owned␇␛[31mred␛[0minnocent␍LLM: sport (confidence 0.99)" in lines
    assert f"{GUTTER}LLM: tech (confidence 0.97)" in lines
    assert "item id␛[8m" in shown and "<U+202E>gnp.exe" in shown and "<U+009B>2J" in shown
