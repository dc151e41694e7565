"""The estimate counts what a run would send (checked against tiktoken directly), and the export
writes one row per item with provenance, losslessly, in CSV, JSONL and Parquet."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import tiktoken
from fakes import (
    FakeBackend,
    completion,
    is_reask,
    item_number,
    json_answer,
    open_run,
    tok,
    write_csv,
    write_task,
)

from labeler.config import TaskConfig, load_config
from labeler.errors import LabelerError
from labeler.export import export_run, item_rows, write_rows
from labeler.label import tokens
from labeler.label.estimate import estimate, format_estimate
from labeler.label.runner import label_pending
from labeler.store import Cache, RunStore

SIMPLE = "[[system]]\nLabel as one of: {{ label_names | join(', ') }}.\n[[user]]\n{{ text }}\n"
LONG = "item 4: " + " ".join(f"token{i}" for i in range(80))
TEXTS = ["item 1: Shares fell sharply.", "item 2: A late winner.", "   ", LONG, "item 5: 東京で新しい電話が発売された"]


@pytest.fixture(autouse=True)
def _no_redirects(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_BASE_URL", "LABELER_CACHE"):
        monkeypatch.delenv(var, raising=False)


def _task(root: Path, **kwargs: Any) -> TaskConfig:
    root.mkdir(parents=True, exist_ok=True)
    write_csv(root / "items.csv", [{"id": f"d{n}", "text": t} for n, t in enumerate(TEXTS, 1)])
    kwargs.setdefault("template", SIMPLE)
    sections = {"input": {"max_input_tokens": 32}, **kwargs.pop("sections", {})}
    return load_config(write_task(root, sections=sections, **kwargs), env={})


def _expected_input_tokens(encoding: str, texts: list[str], budget: int) -> int:
    """OpenAI's chat framing as labeler counts it: 4 tokens a message plus 3, over the rendered messages."""
    enc = tiktoken.get_encoding(encoding)
    system = "Label as one of: business, sport, tech."
    total = 0
    for text in texts:
        ids = enc.encode_ordinary(text)
        user = enc.decode(ids[:budget]) if len(ids) > budget else text
        total += len(enc.encode_ordinary(system)) + 4 + len(enc.encode_ordinary(user.strip())) + 4 + 3
    return total


def test_estimate_counts_rendered_prompts_and_prices_them(tmp_path: Path) -> None:
    task = _task(
        tmp_path,
        model={
            "base_url": "http://127.0.0.1:9/v1",
            "model": "test-model",
            "max_output_tokens": 10,
            "price_input_per_1m": 2.0,
            "price_output_per_1m": 8.0,
            "requests_per_minute": 2,
        },
        members=[{"name": "big", "model": "gpt-4o-mini", "tokens_per_minute": 1000, "requests_per_minute": 0}],
    )
    for model in ("test-model", "gpt-4o-mini"):
        tokens.get_encoder(model)  # puts the packaged BPE files where tiktoken looks (no network)
    labeled = [t for t in TEXTS if t.strip()]
    e = estimate(task)
    assert (e.items, e.skipped, e.truncated, e.sampled) == (5, 1, 1, False)
    small, big = e.members
    assert (small.encoding, big.encoding) == ("cl100k_base", "o200k_base")
    assert small.input_tokens == _expected_input_tokens("cl100k_base", labeled, 32)
    assert big.input_tokens == _expected_input_tokens("o200k_base", labeled, 32)
    assert small.input_tokens != big.input_tokens  # the two encodings split the Japanese text differently
    for m in (small, big):
        assert (m.items, m.requests, m.output_tokens) == (4, 4, 40)
        assert m.dollars == pytest.approx((m.input_tokens * 2.0 + 40 * 8.0) / 1e6)
    assert small.minutes_at_limits == pytest.approx(4 / 2)
    assert big.minutes_at_limits == pytest.approx((big.input_tokens + 40) / 1000)
    assert e.dollars == pytest.approx(small.dollars + big.dollars)
    text = format_estimate(e)
    assert "items: 5 (1 skipped as empty, 1 to be truncated)" in text
    assert f"{small.input_tokens:,} input tokens" in text and text.endswith(f"total: ≤${e.dollars:.4f}")


def test_estimate_with_consistency_samples(tmp_path: Path) -> None:
    sections = {"confidence": {"methods": ["consistency"], "samples": 5}}
    with_n = estimate(_task(tmp_path / "n", model={"base_url": "http://127.0.0.1:9/v1"}, sections=sections))
    without_n = estimate(
        _task(tmp_path / "p", model={"base_url": "http://127.0.0.1:9/v1", "profile": "plain"}, sections=sections)
    )
    one = _expected_input_tokens("cl100k_base", [t for t in TEXTS if t.strip()], 32)
    [a], [b] = with_n.members, without_n.members
    assert (a.requests, a.input_tokens) == (4 * 2, one * 2)  # one request with n=5 for the samples
    assert (b.requests, b.input_tokens) == (4 * 6, one * 6)  # five more requests
    assert a.output_tokens == b.output_tokens == 4 * 16 * 6


def test_estimate_of_a_large_corpus_scales_a_counted_prefix(tmp_path: Path) -> None:
    task = _task(tmp_path)
    tokens.get_encoder("test-model")
    e = estimate(task, max_rendered=2)
    first_two = _expected_input_tokens("cl100k_base", TEXTS[:2], 32)
    assert e.sampled is True
    assert e.members[0].input_tokens == int(first_two * 4 / 2)


# --- export -----------------------------------------------------------------------------------
async def _labeled_run(root: Path, *, members: list[dict] | None = None) -> tuple[TaskConfig, Path]:
    """d1 labeled with logprobs, d2 labeled after a re-ask, d3 skipped (blank), d4 truncated, d5 failed."""
    gold = ["business", "sport", "", "tech", "tech"]
    rows = [{"id": f"d{n}", "text": t, "gold": g} for n, (t, g) in enumerate(zip(TEXTS, gold, strict=True), 1)]
    write_csv(root / "items.csv", rows)
    task = load_config(
        write_task(
            root,
            template=SIMPLE,
            model={"base_url": "http://127.0.0.1:9/v1", "model": "test-model", "price_input_per_1m": 1.0},
            sections={"input": {"max_input_tokens": 32, "gold_column": "gold"}, "retry": {"max_attempts": 1}},
            members=members or [],
        ),
        env={},
    )

    def model(request: Any) -> Any:
        n = item_number(request)
        if n == 1:
            return completion(
                json_answer("business"),
                logprobs=[tok('{"label": "', 1.0), tok("business", 0.9, {"business": 0.9, "tech": 0.1})],
            )
        if n == 2:
            return json_answer("sport") if is_reask(request) else "???"
        if n == 4:
            return json_answer("tech")
        return "nope"

    store = open_run(task, root / "runs" / "r1")
    cache = Cache(root / "cache.sqlite")
    await label_pending(task, store, cache, {m.name: FakeBackend(model) for m in task.members})
    cache.close()
    store.close()
    return task, root / "runs" / "r1"


COLUMNS = [
    "id", "label", "confidence", "status", "reason", "member", "model", "template_hash", "run_id", "cached",
    "input_tokens", "output_tokens", "cost", "flags", "conf_logprob", "conf_verbalized", "conf_consistency",
    "gold", "raw",
]  # fmt: skip


async def test_item_rows_carry_labels_confidence_and_provenance(tmp_path: Path) -> None:
    _, run_dir = await _labeled_run(tmp_path)
    store = RunStore.open(run_dir)
    rows = list(item_rows(store))
    store.close()
    assert all(list(r) == list(rows[0]) for r in rows)  # every row has the same columns, in the same order
    assert list(rows[0])[: len(COLUMNS) - 2] == COLUMNS[:-2]  # the item's own columns first
    assert list(rows[0])[-2:] == ["gold", "raw"]
    by_id = {r["id"]: r for r in rows}
    assert [r["id"] for r in rows] == ["d1", "d2", "d3", "d4", "d5"]
    assert [r["status"] for r in rows] == ["labeled", "labeled", "skipped", "labeled", "failed"]
    assert [r["label"] for r in rows] == ["business", "sport", None, "tech", None]
    assert [r["gold"] for r in rows] == ["business", "sport", None, "tech", "tech"]
    source_hash = hashlib.sha256(SIMPLE.encode()).hexdigest()[:16]
    for r in rows:
        assert (r["member"], r["run_id"], r["template_hash"], r["cached"]) == ("default", "r1", source_hash, False)
    assert by_id["d1"]["confidence"] == pytest.approx(0.9) and by_id["d1"]["conf_logprob"] == pytest.approx(0.9)
    assert by_id["d1"]["conf_verbalized"] is None and by_id["d1"]["model"] == "test-model"
    assert (by_id["d1"]["input_tokens"], by_id["d1"]["output_tokens"]) == (100, 5)
    assert by_id["d1"]["cost"] == pytest.approx(100 * 1.0 / 1e6)
    assert by_id["d2"]["input_tokens"] == 200  # the re-ask is counted
    assert by_id["d3"]["reason"] == "empty or whitespace-only text" and by_id["d3"]["input_tokens"] == 0
    assert by_id["d4"]["flags"] == "truncated" and by_id["d4"]["reason"] == "input truncated to the token budget"
    assert by_id["d5"]["raw"] == "nope" and by_id["d5"]["reason"].startswith("unparseable after one re-ask")
    assert all(r["raw"] is None for r in rows if r["status"] != "failed")


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
async def test_export_round_trips(tmp_path: Path, fmt: str) -> None:
    _, run_dir = await _labeled_run(tmp_path)
    store = RunStore.open(run_dir)
    want = list(item_rows(store, with_text=True))
    store.close()
    out = tmp_path / "out" / f"labels.{fmt}"
    assert export_run(run_dir, out, with_text=True) == 5
    if fmt == "jsonl":
        got = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert got == want
    elif fmt == "parquet":
        assert pq.read_table(out).to_pylist() == want
    else:
        with out.open(encoding="utf-8", newline="") as fh:
            got = list(csv.DictReader(fh))
        assert got == [{k: "" if v is None else str(v) for k, v in r.items()} for r in want]
    assert want[3]["text"] == LONG  # the text as given, not as truncated


async def test_export_with_several_members_has_a_label_column_each(tmp_path: Path) -> None:
    _, run_dir = await _labeled_run(tmp_path, members=[{"name": "second", "model": "m2"}])
    store = RunStore.open(run_dir)
    rows = list(item_rows(store))
    store.close()
    assert list(rows[0])[-4:] == ["label__default", "label__second", "gold", "raw"]
    assert [(r["label__default"], r["label__second"]) for r in rows] == [
        ("business", "business"), ("sport", "sport"), (None, None), ("tech", "tech"), (None, None),
    ]  # fmt: skip
    assert all(r["member"] == "default" for r in rows)


def test_parquet_export_of_columns_empty_in_the_first_chunk(tmp_path: Path) -> None:
    rows = [{"id": str(i), "reason": None, "conf_verbalized": None, "cached": False} for i in range(5000)]
    rows.append({"id": "5000", "reason": "input truncated", "conf_verbalized": 0.25, "cached": True})
    out = tmp_path / "big.parquet"
    assert write_rows(iter(rows), out, "parquet") == 5001
    table = pq.read_table(out)
    assert table.num_rows == 5001
    assert table.column("reason").to_pylist()[-2:] == [None, "input truncated"]
    assert table.column("conf_verbalized").to_pylist()[-1] == 0.25


def test_write_rows_edge_cases(tmp_path: Path) -> None:
    assert write_rows(iter([]), tmp_path / "empty.csv", "csv") == 0
    assert (tmp_path / "empty.csv").read_text() == ""
    with pytest.raises(LabelerError, match="use one of csv, jsonl, parquet"):
        write_rows(iter([{"a": 1}]), tmp_path / "x.xlsx", "xlsx")
