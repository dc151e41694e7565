"""The study on a real run store (a scripted in-process model, no sockets): prices from the run's tokens, the
review corrections, the written report, the live picker's exclusions, and the command line."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pytest
from fakes import FakeBackend, completion, item_number, json_answer
from test_runner import LABELS, _patch_backends, json_logprobs, make_task

from labeler.cli import study as study_cli
from labeler.label import pipeline
from labeler.review.router import route_run
from labeler.store import RunStore
from labeler.store.rows import Review
from labeler.study.data import from_run, uniform
from labeler.study.live import next_batch
from labeler.study.run import StudyOptions, study_run
from labeler.study.synthetic import synthetic_texts

N = 240


async def _make_run(root: Path, monkeypatch: pytest.MonkeyPatch, *, gold_for: int = N) -> Path:
    """A run of N items whose text decides the label; the fake model files every hard item under business.
    The first `gold_for` items carry a gold label (the corpus's human labels), the rest none."""
    texts, y, hard = synthetic_texts(N, k=3, seed=5)
    gold = [LABELS[c] if n < gold_for else "" for n, c in enumerate(y)]
    truth = [LABELS[c] for c in y]
    said = {n: "business" if hard[n - 1] else truth[n - 1] for n in range(1, N + 1)}
    task = make_task(
        root, gold, texts={n: f"item {n}: {texts[n - 1]}" for n in range(1, N + 1)}, model={"concurrency": 4}
    )

    def answer(request: object) -> object:
        n = item_number(request)  # type: ignore[arg-type]
        other = next(lab for lab in LABELS if lab != said[n])
        p = 0.55 if hard[n - 1] else 0.95
        return completion(json_answer(said[n]), logprobs=json_logprobs(said[n], p, other))

    _patch_backends(monkeypatch, lambda name: FakeBackend(answer))  # type: ignore[arg-type]
    out, _ = await pipeline.start_run(task, run_dir=root / "runs" / "r", show_progress=False)
    return out


@pytest.fixture
async def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return await _make_run(tmp_path, monkeypatch)


def _review(run: Path, ids: list[str], label_of: dict[str, str]) -> None:
    store = RunStore.open(run)
    store.put_reviews([Review(i, "ann", label_of[i], source="csv") for i in ids])
    store.close()


async def test_study_of_a_run_prices_its_tokens_and_uses_the_review_corrections(run_dir: Path) -> None:
    store = RunStore.open(run_dir)
    gold = store.gold_labels()
    store.close()
    reviewed = sorted(gold)[:30]
    _review(run_dir, reviewed, gold)
    data = from_run(run_dir)
    pool = set(data.ids)
    in_pool = [i for i in reviewed if i in pool]
    # the fake model answered 100 input + 5 output tokens per item and cost nothing: gpt-4o-mini list price
    assert data.prices.input_tokens == 100 * len(data.ids) and data.prices.output_tokens == 5 * len(data.ids)
    assert data.prices.llm_cost == pytest.approx((100 * 0.15 + 5 * 0.60) * len(data.ids) / 1e6)
    assert data.prices.review_labels == len(in_pool) and data.prices.price_per_label > 0
    corrected = dict(zip(data.ids, data.corrected.tolist(), strict=True))
    assert all(corrected[i] == LABELS.index(gold[i]) for i in in_pool)

    results, paths = study_run(run_dir, opts=StudyOptions(repeats=1, batch=20, max_labels=80, n_boot=100))
    names = {p.name for p in paths.values()}
    assert names == {
        "report.md",
        "report.html",
        "curves.png",
        "curves_by_strategy.png",
        "overprediction.png",
        "ece.png",
        "study.json",
    }
    assert all(p.stat().st_size > 0 for p in paths.values())
    html = paths["report.html"].read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and "<img src=" not in html  # self-contained
    doc = json.loads(paths["study.json"].read_text(encoding="utf-8"))
    assert doc["data"]["focus"] == "business"  # balanced classes: the one the LLM over-predicts
    split = json.loads((run_dir / "study" / "split.json").read_text(encoding="utf-8"))
    assert set(split["test_ids"]) == set(data.test_ids) and not set(split["test_ids"]) & pool
    llm = next(a for a in results["arms"] if a["key"] == "llm")
    assert llm["per_class"][0]["over_prediction"]["low"] > 1.0  # the student inherits the LLM's skew
    text = paths["report.md"].read_text(encoding="utf-8")  # prices are stated
    assert (
        f"${data.prices.price_per_label:.2f} each" in text and "gpt-4o-mini's list price, $0.15 / $0.6 per 1M" in text
    )


async def test_the_live_picker_leaves_out_the_test_split_the_queue_and_the_labeled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = await _make_run(tmp_path, monkeypatch, gold_for=60)  # humans have labeled the first 60 items
    route_run(run, max_items=20, audit_fraction=0.05, seed=2)
    store = RunStore.open(run)
    queue = store.queue()
    gold = store.gold_labels()
    store.close()
    queued = {e.item_id for e in queue}
    assert any(e.audit for e in queue) and len(gold) == 60
    nb = next_batch(run, strategy="margin", batch=12)
    assert len(nb.picks) == 12 and not nb.cold_start
    assert nb.trained_on == sum(uniform(0, i) >= 0.3 for i in gold)  # test-split labels are not trained on
    ids = [p.id for p in nb.picks]
    assert not set(ids) & queued  # neither the routed items nor the random audit
    assert not set(ids) & set(gold)
    assert all(uniform(0, i) >= 0.3 for i in ids)  # never a test-split item, labeled or not
    assert all(p.reason.startswith("margin") for p in nb.picks)
    assert [p.rank for p in nb.picks] == list(range(1, 13))


async def test_the_live_picker_starts_cold_without_human_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = await _make_run(tmp_path, monkeypatch, gold_for=0)
    nb = next_batch(run, strategy="qbc", batch=5)
    assert nb.cold_start and nb.trained_on == 0 and len(nb.picks) == 5
    assert all(p.reason.startswith("cold start") and p.strategy == "random" for p in nb.picks)
    nb = next_batch(run, strategy="margin_coreset", batch=5)
    assert nb.cold_start and {p.strategy for p in nb.picks} == {"coreset"}


async def test_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = await _make_run(tmp_path, monkeypatch, gold_for=150)
    parser = argparse.ArgumentParser(prog="labeler")
    sub = parser.add_subparsers(dest="command", required=True)
    study_cli.register(sub)
    args = parser.parse_args(
        [
            "study",
            str(run_dir),
            "--repeats",
            "1",
            "--batch",
            "20",
            "--max-labels",
            "60",
            "--n-boot",
            "50",
            "--strategies",
            "random,margin",
            "--price-per-label",
            "0.5",
        ]
    )
    assert args.fn(args) == 0
    out = capsys.readouterr().out
    assert "equal-cost budget" in out and (run_dir / "study" / "report.md").exists()
    doc = json.loads((run_dir / "study" / "study.json").read_text(encoding="utf-8"))
    assert doc["prices"]["price_per_label"] == 0.5 and list(doc["curves"]) == ["random", "margin"]
    args = parser.parse_args(["study", "next", str(run_dir), "--strategy", "entropy", "--batch", "5"])
    assert args.fn(args) == 0
    rows = list(csv.DictReader((run_dir / "study" / "next_batch.csv").open(encoding="utf-8")))
    assert len(rows) == 5 and all(r["strategy"] == "entropy" and r["reason"] for r in rows)
    split = json.loads((run_dir / "study" / "split.json").read_text(encoding="utf-8"))
    assert not {r["id"] for r in rows} & set(split["test_ids"])
