"""`labeler eval` end to end on small synthetic runs built with RunStore: a benchmark run with gold labels,
and a reviewed run with a review queue, a stratified random audit and two reviewers."""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from fakes import write_task

from labeler import evaluate
from labeler.cli.humans import register
from labeler.config import load_config
from labeler.errors import InputError, LabelerError
from labeler.evaluate.gather import gather
from labeler.evaluate.measure import build_metrics
from labeler.inputs import Row
from labeler.store import RunStore
from labeler.store.rows import CombinedRow, QueueEntry, Review, Stratum
from labeler.types import Item, ItemResult

LABELS = ("sport", "business", "tech")
TRUE_SHARE = (0.5, 0.3, 0.2)


def _simulate(n: int, seed: int) -> tuple[list[str], list[str | None], list[float]]:
    """True labels, LLM labels (75% right; errors go to 'tech', two items fail) and logprob confidences
    (higher when right)."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(LABELS, size=n, p=TRUE_SHARE).tolist()
    right = rng.random(n) < 0.75
    pred: list[str | None] = [
        t if ok else ("tech" if t != "tech" else "sport") for t, ok in zip(truth, right, strict=True)
    ]
    pred[0] = pred[1] = None
    conf = np.where(right, rng.uniform(0.6, 1.0, n), rng.uniform(0.34, 0.8, n)).tolist()
    return truth, pred, conf


def _config(run_dir: Path, sections: dict[str, dict[str, object]] | None = None) -> dict[str, object]:
    """The manifest's config snapshot of a real task file with LABELS (the run store reads its task from it)."""
    path = write_task(run_dir.parent / f"{run_dir.name}-task", labels=LABELS, sections=sections)
    task = load_config(path)
    return {"config": task.raw, "config_path": str(task.path)}


def make_run(
    run_dir: Path,
    *,
    n: int = 240,
    gold: bool = True,
    queue: bool = False,
    seed: int = 0,
) -> tuple[list[str], list[str | None]]:
    truth, pred, conf = _simulate(n, seed)
    manifest = {
        "run_id": run_dir.name,
        "labels": list(LABELS),
        "members": [{"name": "default", "template_hash": "h"}],
        **_config(run_dir, {"review": {"price_per_label": 0.25}, "routing": {"max_items": 30}}),
    }
    store = RunStore.create(run_dir, manifest)
    ids = [f"i{k}" for k in range(n)]
    rows = [
        Row(Item(id=i, text=f"an article about {t} number {k}", row=k + 1), gold=t if gold else None)
        for k, (i, t) in enumerate(zip(ids, truth, strict=True))
    ]
    rows.append(Row(Item(id="empty", text=" ", row=n + 1), skip="empty or whitespace-only text"))
    store.ingest(rows, members=["default"])
    for i, p, c in zip(ids, pred, conf, strict=True):
        if p is None:
            store.put_result(ItemResult(item_id=i, member="default", status="failed", reason="unparseable", raw="?"))
            continue
        rest = (1 - c) / 2
        dist = {lab: (c if lab == p else rest) for lab in LABELS}
        store.put_result(
            ItemResult(
                item_id=i,
                member="default",
                status="labeled",
                label=p,
                confidence=c,
                distributions={"logprob": dist},
                model="m",
                input_tokens=100,
                output_tokens=2,
                cost=0.001,
            )
        )
    if queue:
        _add_review_tables(store, ids, truth, conf, seed=seed)
    store.close()
    return truth, pred


def _add_review_tables(store: RunStore, ids: list[str], truth: list[str], conf: list[float], seed: int) -> None:
    """Route the 30 lowest-confidence items; audit 15% of each confidence stratum at random; reviewer ann
    labels every queued item (wrong on every 10th), bob the audited ones."""
    rng = np.random.default_rng(seed + 1)
    order = np.argsort(conf)
    routed = {ids[k] for k in order[:30]}
    strata = {i: ("low" if c < 0.7 else "high") for i, c in zip(ids, conf, strict=True)}
    audited: dict[str, float] = {}
    sizes = []
    for h in ("low", "high"):
        members = [i for i in ids if strata[i] == h]
        take = max(2, round(0.15 * len(members)))
        for i in rng.choice(members, size=take, replace=False):
            audited[str(i)] = take / len(members)
        sizes.append(Stratum(h, len(members), take))
    truth_of = dict(zip(ids, truth, strict=True))
    entries, reviews = [], []
    for rank, i in enumerate(sorted(routed | set(audited))):
        reasons = (["low_confidence"] if i in routed else []) + (["audit"] if i in audited else [])
        entries.append(
            QueueEntry(i, rank, tuple(reasons), 1.0, i in audited, None, None, audited.get(i), strata[i])
        )
        wrong = LABELS[(LABELS.index(truth_of[i]) + 1) % 3]
        ann = wrong if rank % 10 == 0 else truth_of[i]
        reviews.append(Review(i, "ann", ann, "model error", "", "csv"))
        if i in audited:
            reviews.append(Review(i, "bob", truth_of[i], None, "", "csv"))
    store.write_queue(entries, sizes, seed=seed)
    store.put_reviews(reviews)


def _run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.fn(args))


def test_eval_writes_the_report_files_for_a_benchmark_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth, pred = make_run(tmp_path / "bench")
    assert _run_cli(["eval", str(tmp_path / "bench"), "--boot", "200"]) == 0
    out = tmp_path / "bench" / "report"
    for name in ("report.md", "report.html", "metrics.json", "confusion.png", "overprediction.png"):
        assert (out / name).stat().st_size > 0, name
    for name in ("reliability.png", "budget.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = json.loads((out / "metrics.json").read_text())
    expected_acc = np.mean([t == p for t, p in zip(truth, pred, strict=True)])
    assert m["agreement"]["accuracy"]["value"] == pytest.approx(expected_acc)
    assert m["data"]["items"] == len(truth) and m["data"]["skipped"] == 1 and m["data"]["failed"] == 2
    tech = next(c for c in m["agreement"]["per_class"] if c["label"] == "tech")
    assert tech["over_prediction"]["low"] > 1  # the simulated LLM sends its errors to "tech"
    assert m["confusion_pairs"][0]["predicted"] == "tech" and len(m["confusion_pairs"][0]["examples"]) == 3
    assert m["calibration"]["logprob"]["brier_multiclass"] is not None
    assert m["cost"]["llm_cost"] == pytest.approx(0.001 * (len(truth) - 2))
    assert m["cost"]["review_budget"] == 30  # routing.max_items from the manifest
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "What this shows" in html
    md = (out / "report.md").read_text()
    assert "over-predicts “tech”" in md and "ECE = Σ_b |B_b|/n" in md
    assert "over-predicts" in capsys.readouterr().out


def test_eval_uses_the_audit_queue_and_several_reviewers(tmp_path: Path) -> None:
    truth, pred = make_run(tmp_path / "rev", gold=False, queue=True, seed=3)
    out, m = evaluate.evaluate_run(tmp_path / "rev", n_boot=200)
    assert (out / "confusion.png").exists() and (out / "report.html").exists()
    assert m["data"]["human_set_is_selected"] is True
    assert set(m["data"]["reviewers"]) == {"ann", "bob"}
    hum = m["humans"]
    assert hum["items"] == m["audit"]["audited"] and -1 <= hum["alpha"]["value"] <= 1
    assert hum["band"]["verdict"] in ("inside", "above", "below")
    au = m["audit"]
    assert au["audited_with_label"] == au["audited"] and set(au["strata"]) == {"low", "high"}
    true_acc = np.mean([t == p for t, p in zip(truth, pred, strict=True)])
    assert au["llm_accuracy"]["low"] <= true_acc <= au["llm_accuracy"]["high"]
    assert au["final_accuracy"]["value"] > au["unseen_accuracy"]["value"]
    prev = {p["label"]: p for p in au["prevalence"]}
    for lab in LABELS:
        share = np.mean([t == lab for t in truth])
        assert prev[lab]["ppi"]["low"] <= share <= prev[lab]["ppi"]["high"]
    assert m["cost"]["review_budget"] == au["queue_size"] and m["cost"]["accuracy_source"] == "audit"
    assert m["corrections"] == {"model error": au["queue_size"]}
    md = (out / "report.md").read_text()
    assert "Humans among themselves" in md and "prediction-powered" in md
    # routed items whose review has not come in stay LLM-labelled in the final dataset, at routed accuracy
    conn = sqlite3.connect(tmp_path / "rev" / "run.sqlite")
    waiting = [r[0] for r in conn.execute("SELECT item_id FROM queue WHERE audit = 0 ORDER BY item_id LIMIT 5")]
    conn.executemany("DELETE FROM reviews WHERE item_id = ?", [(i,) for i in waiting])
    conn.commit()
    conn.close()
    later = build_metrics(gather(tmp_path / "rev"), n_boot=50)["audit"]["final_accuracy"]
    assert later["waiting_for_review"] == 5 and later["value"] < au["final_accuracy"]["value"]


def test_eval_takes_human_labels_from_a_file(tmp_path: Path) -> None:
    truth, pred = make_run(tmp_path / "plain", gold=False)
    human = tmp_path / "human.csv"
    human.write_text("id,label,reviewer\n" + "".join(f"i{k},{truth[k].upper()},carol\n" for k in range(0, 100)))
    out, m = evaluate.evaluate_run(tmp_path / "plain", human_file=human, out_dir=tmp_path / "r", n_boot=100)
    assert out == tmp_path / "r" and (out / "report.md").exists()
    assert m["data"]["with_human"] == 100 and m["data"]["reviewers"] == {"carol": 100}
    expected = np.mean([truth[k] == pred[k] for k in range(100)])
    assert m["agreement"]["accuracy"]["value"] == pytest.approx(expected)
    assert m["audit"] is None and "humans" not in m


def test_eval_errors_name_the_fix(tmp_path: Path) -> None:
    make_run(tmp_path / "nolabels", gold=False, n=20)
    with pytest.raises(LabelerError, match="--human FILE"):
        evaluate.evaluate_run(tmp_path / "nolabels", n_boot=10)
    bad = tmp_path / "bad.csv"
    bad.write_text("item,answer\nx,sport\n")
    with pytest.raises(InputError, match="columns id and label"):
        evaluate.evaluate_run(tmp_path / "nolabels", human_file=bad, n_boot=10)
    other = tmp_path / "other.jsonl"
    other.write_text('{"id": "zzz", "label": "sport"}\n')
    with pytest.raises(InputError, match="none of the ids"):
        evaluate.evaluate_run(tmp_path / "nolabels", human_file=other, n_boot=10)


def test_eval_reads_an_ensemble_as_the_router_does(tmp_path: Path) -> None:
    """Two members and a `combined` table: the combined label is the LLM's label, the calibrated confidence
    the routing one, and the per-method confidences are scored against the first member's own label."""
    n = 80
    truth, pred, conf = _simulate(n, 5)
    run = tmp_path / "ens"
    manifest = {
        "run_id": "ens",
        "labels": list(LABELS),
        "members": [{"name": "a", "template_hash": "h"}, {"name": "b", "template_hash": "h"}],
        **_config(run),
    }
    store = RunStore.create(run, manifest)
    ids = [f"e{k}" for k in range(n)]
    store.ingest(
        [Row(Item(id=i, text=f"t{k}", row=k + 1), gold=t) for k, (i, t) in enumerate(zip(ids, truth, strict=True))],
        members=["a", "b"],
    )
    combined_rows, calibrated = [], []
    for k, i in enumerate(ids):
        own = pred[k] or "sport"  # member a never fails; b always says "business"
        dist = {lab: (conf[k] if lab == own else (1 - conf[k]) / 2) for lab in LABELS}
        store.put_result(ItemResult(i, "a", "labeled", own, conf[k], {"logprob": dist}))
        store.put_result(ItemResult(i, "b", "labeled", "business", 0.5, {"logprob": dict.fromkeys(LABELS, 1 / 3)}))
        combined = truth[k] if k % 2 == 0 else own  # the ensemble fixes every other item
        combined_rows.append(CombinedRow(i, combined, 0.7, {}, None, None, None, False, {}))
        calibrated.append((i, 0.9 if combined == truth[k] else 0.4))
    store.put_combined(combined_rows, signature="test")
    store.set_calibrated(calibrated)
    store.close()
    inputs = gather(run)
    m = build_metrics(inputs, n_boot=50)
    combined_acc = np.mean([(truth[k] if k % 2 == 0 else (pred[k] or "sport")) == truth[k] for k in range(n)])
    assert m["agreement"]["accuracy"]["value"] == pytest.approx(combined_acc)
    assert m["members"]["b"]["value"] == pytest.approx(np.mean([t == "business" for t in truth]))
    cal = m["calibration"]
    assert cal["calibrated"]["name"] == "calibrated, used for routing" and "confidence" not in cal
    assert cal["calibrated"]["auroc"]["value"] == 1.0  # 0.9 exactly on the right labels, 0.4 on the wrong
    own_acc = np.mean([(pred[k] or "sport") == truth[k] for k in range(n)])
    assert cal["logprob"]["accuracy"] == pytest.approx(own_acc)
    assert m["budget_curve"]["routing_method"] == "calibrated"
