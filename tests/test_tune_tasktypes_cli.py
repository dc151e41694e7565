"""`labeler run` → `route` → `tune` → `relabel` → `eval` through the CLI for a multi-label task, on a fake backend
whose errors are known per item: the plain prompt drops one true label of two-label items, the careful one does
not; both add "tech" where it is wrong in 2 of 5 items, in one sample of five (vote share 0.2). So tuning must
choose the careful variant with a threshold on tech; the relabel pays only for the items tuning did not ask, and
its labels are exactly the human ones; the random audit is never asked during tuning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fakes import FakeBackend, item_number, user_text, write_csv, write_task
from test_runner import FAST_RETRY, _patch_backends

from labeler.cli import main
from labeler.record import records
from labeler.review.router import route_run
from labeler.store import RunStore
from labeler.types import Request

LABELS = ("sport", "politics", "tech", "business")
N = 60
CAREFUL = "Be careful: name every topic that applies."
TEMPLATE = """\
[[system]]
{{ instructions }} Topics: {{ label_names | join(", ") }}. Answer with JSON only.
[[user]]
{{ text }}
"""


def world(seed: int = 0) -> tuple[list[tuple[str, ...]], list[bool], list[bool]]:
    rng = np.random.default_rng(seed)
    truth, spurious, misses = [], [], []
    for _ in range(N):
        drawn = rng.choice(["sport", "politics", "business"], size=int(rng.integers(1, 3)), replace=False)
        truth.append(tuple(sorted((str(x) for x in drawn), key=LABELS.index)))
        spurious.append(bool(rng.random() < 0.4))
        misses.append(len(truth[-1]) == 2 and bool(rng.random() < 0.7))
    return truth, spurious, misses


def backend() -> FakeBackend:
    truth, spurious, misses = world()

    def answer(request: Request) -> object:
        n = item_number(request) - 1
        careful = any(CAREFUL in m.content for m in request.messages)
        labels = list(truth[n][1:] if misses[n] and not careful else truth[n])
        with_tech = json.dumps({"labels": [*labels, "tech"] if spurious[n] else labels})
        plain = json.dumps({"labels": labels})
        if request.n > 1:  # the self-consistency samples: tech in one of five
            return [with_tech, *[plain] * (request.n - 1)]
        return with_tech

    return FakeBackend(answer)  # type: ignore[arg-type]


@pytest.fixture
def made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[FakeBackend]:
    return _patch_backends(monkeypatch, lambda name: backend())


@pytest.fixture
def run_dir(tmp_path: Path, made: list[FakeBackend]) -> Path:
    truth, _, _ = world()
    write_csv(tmp_path / "items.csv", [{"id": f"d{n:03d}", "text": f"item {n}: a short text", "gold": "; ".join(t)}
                                       for n, t in enumerate(truth, 1)])
    config = write_task(
        tmp_path, labels=LABELS, template=TEMPLATE,
        task={"type": "multi_label", "min_labels": 1, "instructions": "Name the topics."},
        sections={"retry": FAST_RETRY, "input": {"gold_column": "gold"},
                  "confidence": {"methods": ["consistency"], "samples": 5},
                  "tune": {"strategies": ["fixed"], "folds": 5}},
    )
    text = config.read_text(encoding="utf-8")
    config.write_text(text + f'\n[[variants]]\nname = "plain"\n\n[[variants]]\nname = "careful"\n'
                      f'instructions = "{CAREFUL}"\n', encoding="utf-8")
    out = tmp_path / "runs" / "base"
    assert main(["run", str(config), "--run-dir", str(out), "--quiet"]) == 0
    route_run(out, audit_fraction=0.2, max_items=20)
    return out


def test_tune_relabel_and_eval_a_multi_label_run(
    run_dir: Path, made: list[FakeBackend], capsys: pytest.CaptureFixture[str]
) -> None:
    truth, spurious, _ = world()
    store = RunStore.open(run_dir)
    audit = {e.item_id for e in store.queue() if e.audit}
    audit_texts = {e.text for e in store.queue() if e.audit}
    store.close()
    assert len(audit) >= 5
    capsys.readouterr()
    asked_before = sum(b.calls for b in made)
    assert main(["tune", str(run_dir), "--quiet"]) == 0
    out = capsys.readouterr().out
    tune_requests = [r for b in made for r in b.requests][asked_before:]
    assert tune_requests and not any(user_text(r) in audit_texts for r in tune_requests)  # the audit never asked
    assert "chosen: careful/fixed with correction thresholds" in out and "nested cross-validation" in out
    assert "tech ≥ " in out and "subset accuracy" in out
    store = RunStore.open(run_dir)
    report = store.tuning()
    store.close()
    assert report is not None and report["task_type"] == "multi_label"
    assert not set(report["oof"]["ids"]) & audit and report["items"]["n"] == N - len(audit)
    assert set(report["chosen"]["thresholds"]) == {"tech"} and 0.2 < report["chosen"]["thresholds"]["tech"] <= 1.0
    assert report["chosen"]["score"] == 1.0 and not report["applied_in_place"]  # careful is not the run's prompt
    plain = next(s for s in report["scores"] if (s["candidate"], s["correction"]) == ("plain/fixed", "none"))
    assert plain["score"] < 0.9
    assert report["nested"]["low"] <= 1.0 == report["nested"]["score"]
    assert "tech" in (run_dir / "tuned.toml").read_text(encoding="utf-8")

    assert main(["relabel", str(run_dir), "--quiet"]) == 0
    new = run_dir.parent / "base-tuned"
    store = RunStore.open(new)
    try:
        labels = {r.id: json.loads(r.label) for r in records(store) if r.label is not None}
        assert {e.item_id for e in store.queue() if e.audit} == audit  # the audit copied: it measures new labels
        relabel = store.tuning()["relabel"]
        assert relabel["asked"] == len(audit)  # only what tuning did not ask: the audit items
        assert relabel["routing"]["rows"][0]["audit_accuracy"] == 1.0  # the audit checks the new annotations
    finally:
        store.close()
    assert labels == {f"d{n:03d}": list(t) for n, t in enumerate(truth, 1)}  # careful + no low-share tech
    assert sum(spurious) > 10
    capsys.readouterr()
    assert main(["eval", str(new)]) == 0
    shown_eval = capsys.readouterr().out.lower()
    assert "micro f1 = 1.00" in shown_eval and "hamming loss 0.000" in shown_eval  # the multi-label report


def test_the_run_own_prompt_is_thresholded_in_place(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tune", str(run_dir), "--quiet", "--variant", "plain"]) == 0
    store = RunStore.open(run_dir)
    try:
        report = store.tuning()
        assert report is not None and report["applied_in_place"]
        assert store.correction() is not None and set(store.correction().offsets) == {"tech"}
        recs = [r for r in records(store) if r.label is not None]
        assert recs and all("tech" not in json.loads(r.label) for r in recs)  # the thresholds applied by combine
    finally:
        store.close()
    assert "applied to it in place" in capsys.readouterr().out


TYPES = ("PER", "LOC")


def span_backend() -> FakeBackend:
    """Spans: the careful prompt finds Ada, Bob and Paris; the plain one misses Bob in 3 of 5 items; both mark
    'day' as a LOC in 2 of 5 items, in one sample of five."""
    rng = np.random.default_rng(1)
    misses, spurious = rng.random(N) < 0.6, rng.random(N) < 0.4

    def answer(request: Request) -> object:
        n = item_number(request) - 1
        careful = any(CAREFUL in m.content for m in request.messages)
        spans = [{"text": "Ada", "type": "PER"}, {"text": "Paris", "type": "LOC"}]
        if careful or not misses[n]:
            spans.append({"text": "Bob", "type": "PER"})
        with_day = json.dumps({"spans": [*spans, {"text": "day", "type": "LOC"}] if spurious[n] else spans})
        plain = json.dumps({"spans": spans})
        return [with_day, *[plain] * (request.n - 1)] if request.n > 1 else with_day

    return FakeBackend(answer)  # type: ignore[arg-type]


def test_tune_and_relabel_a_span_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    rows, truth = [], {}
    for n in range(1, N + 1):
        text = f"item {n}: Ada met Bob in Paris on day {n}."
        gold = [{"start": text.index(q), "end": text.index(q) + len(q), "type": k}
                for q, k in (("Ada", "PER"), ("Bob", "PER"), ("Paris", "LOC"))]
        rows.append({"id": f"s{n:03d}", "text": text, "gold": json.dumps(gold)})
        truth[f"s{n:03d}"] = {(g["start"], g["end"], g["type"]) for g in gold}
    write_csv(tmp_path / "items.csv", rows)
    config = write_task(
        tmp_path, labels=TYPES, template=TEMPLATE, task={"type": "spans", "instructions": "Mark the names."},
        sections={"retry": FAST_RETRY, "input": {"gold_column": "gold"},
                  "confidence": {"methods": ["consistency"], "samples": 5}, "tune": {"strategies": ["fixed"]}},
    )
    config.write_text(config.read_text(encoding="utf-8") + f'\n[[variants]]\nname = "plain"\n\n[[variants]]\n'
                      f'name = "careful"\ninstructions = "{CAREFUL}"\n', encoding="utf-8")
    _patch_backends(monkeypatch, lambda name: span_backend())
    run_dir = tmp_path / "runs" / "spans"
    assert main(["run", str(config), "--run-dir", str(run_dir), "--quiet"]) == 0
    route_run(run_dir, audit_fraction=0.2, max_items=20)
    capsys.readouterr()
    assert main(["tune", str(run_dir), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "exact-match span micro-F1" in out and "partial f1 micro" in out
    store = RunStore.open(run_dir)
    report = store.tuning()
    store.close()
    assert report is not None and report["chosen"]["candidate"] == "careful/fixed"
    assert report["chosen"]["correction"] == "thresholds" and set(report["chosen"]["thresholds"]) == {"LOC"}
    assert report["chosen"]["score"] == 1.0 and report["nested"]["score"] == 1.0
    assert main(["relabel", str(run_dir), "--quiet"]) == 0
    store = RunStore.open(run_dir.parent / "spans-tuned")
    try:
        got = {r.id: {(s["start"], s["end"], s["type"]) for s in json.loads(r.label)} for r in records(store)
               if r.label is not None}
    finally:
        store.close()
    assert got == truth  # every Bob found, every 'day' LOC below its threshold dropped


def test_tune_a_multi_label_run_on_a_dev_file(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth, _, _ = world()
    store = RunStore.open(run_dir)
    audit = {e.item_id for e in store.queue() if e.audit}
    store.close()
    ids = [f"d{n:03d}" for n in range(1, 41)]
    dev = write_csv(tmp_path / "dev.csv", [{"id": i, "label": "; ".join(truth[int(i[1:]) - 1])} for i in ids])
    assert main(["tune", str(run_dir), "--quiet", "--dev", str(dev)]) == 0
    store = RunStore.open(run_dir)
    report = store.tuning()
    store.close()
    assert report is not None and report["items"]["source"] == "the --dev file"
    assert sorted(report["oof"]["ids"]) == sorted(set(ids) - audit)  # the dev items, never the audit's
    bad = write_csv(tmp_path / "bad.csv", [{"id": i, "label": "weather"} for i in ids])  # no label of the set
    assert main(["tune", str(run_dir), "--quiet", "--dev", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "40 labels are no annotation of this task (e.g. 'weather')" in err and "separated by ';'" in err


def test_gold_cells_are_stored_canonical(
    run_dir: Path, tmp_path: Path, made: list[FakeBackend], capsys: pytest.CaptureFixture[str]
) -> None:
    """The corpus's `a; b` gold cells are stored as the task type encodes them (what reviews hold too), so
    every reader of human labels (calibrate, the final dataset, tune) reads one spelling; a cell naming a
    label outside the set is refused at ingest in one line naming the item."""
    truth, _, _ = world()
    store = RunStore.open(run_dir)
    try:
        gold = store.gold_labels()
    finally:
        store.close()
    assert gold == {f"d{n:03d}": json.dumps(list(t)) for n, t in enumerate(truth, 1)}
    assert main(["review", "merge", str(run_dir), "--out", str(tmp_path / "final.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "final.jsonl").read_text(encoding="utf-8").splitlines()]
    assert rows[0]["human_label"] == list(truth[0])

    write_csv(tmp_path / "bad.csv", [{"id": "b1", "text": "x", "gold": "sport"},
                                     {"id": "b2", "text": "y", "gold": "sport; weather"}])
    config = next(tmp_path.glob("*.toml"))
    assert main(["run", str(config), "--input", str(tmp_path / "bad.csv"), "--run-dir", str(tmp_path / "bad"),
                 "--quiet"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["labeler: error: item 'b2': its gold cell cannot be read: label 'weather' is not one of sport, "
                   "politics, tech, business; fix the cell or leave it empty"], err
    assert not (tmp_path / "bad").exists()
