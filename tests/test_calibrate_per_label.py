"""Calibration per label of a multi-label run (labeler.confidence.per_label), on synthetic data whose
miscalibration is known: the vote share s of "sport" and "politics" is right with probability s**3 (an
overconfident model), that of "tech" with probability s (already calibrated)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fakes import write_task

from labeler.confidence.calibrators import CalData, Selection
from labeler.confidence.elements import EMPTY
from labeler.confidence.per_label import ELEMENT, calibrated_item, element_data, fit_elements
from labeler.confidence.reliability import ece
from labeler.confidence.run import calibrate_run, combine_run
from labeler.config import load_config
from labeler.inputs import Row
from labeler.record import records
from labeler.store import RunStore
from labeler.store.rows import Review
from labeler.tasktypes.multi_label import MultiLabel
from labeler.types import Item, ItemResult

LABELS = ("sport", "politics", "tech")
SHARES = (0.2, 0.4, 0.6, 0.8, 1.0)
TRUE_P = {"sport": lambda s: s**3, "politics": lambda s: s**3, "tech": lambda s: s}


def synthetic(n: int, seed: int) -> tuple[dict[str, dict[str, float]], dict[str, tuple[str, ...]]]:
    """n items: the LLM's element confidences (each label chosen with probability 1/2, its share drawn from
    SHARES; no label chosen: EMPTY at share 0.5, right half the time) and the human annotations."""
    rng = np.random.default_rng(seed)
    llm, human = {}, {}
    for k in range(n):
        item = f"i{k}"
        chosen = [lab for lab in LABELS if rng.random() < 0.5]
        dist, theirs = {}, []
        for lab in chosen:
            s = float(rng.choice(SHARES))
            dist[f"label {lab}"] = s
            if rng.random() < TRUE_P[lab](s):
                theirs.append(lab)
        if not chosen:
            dist[EMPTY] = 0.5
            if rng.random() >= 0.5:
                theirs.append("tech")
        llm[item], human[item] = dist, tuple(theirs)
    return llm, human


def test_per_label_calibration_lowers_ece_on_held_out_items() -> None:
    kind = MultiLabel(LABELS)
    llm, human = synthetic(6000, seed=3)
    train = {i: d for i, d in llm.items() if int(i[1:]) % 2 == 0}
    test = {i: d for i, d in llm.items() if int(i[1:]) % 2 == 1}
    names = [f"label {lab}" for lab in LABELS] + [EMPTY]
    fits = fit_elements(element_data(train, human, kind), names, n_splits=5, seed=0, min_items=20)
    held = element_data(test, human, kind)
    for lab in LABELS:
        sel = fits[f"label {lab}"]
        assert isinstance(sel, Selection)
        _, conf, ok = held[f"label {lab}"]
        before = ece(np.asarray(conf), np.asarray(ok))
        after = ece(sel.calibrator.predict(CalData.from_confidence(conf, ok)), np.asarray(ok))
        if lab == "tech":  # calibrated already: stays calibrated
            assert before < 0.05 and after < 0.05
        else:  # mean |s - s**3| over SHARES is 0.24: calibration removes nearly all of it
            assert before > 0.2 and after < 0.05, (lab, before, after)
    # the right answer of one element, by hand: a chosen label is right when the human chose it too
    data = element_data({"a": {"label sport": 0.6, "label tech": 0.8}, "b": {EMPTY: 0.5}},
                        {"a": ("sport",), "b": ()}, kind)
    assert data == {"label sport": (["a"], [0.6], [1]), "label tech": (["a"], [0.8], [0]), EMPTY: (["b"], [0.5], [1])}


def test_calibrated_item_is_the_lowest_calibrated_element() -> None:
    def halve(element: str, conf: float) -> float | None:
        return conf / 2 if element == "label sport" else None

    assert calibrated_item({"label sport": 0.9, "label tech": 0.6}, halve) == pytest.approx(0.45)
    assert calibrated_item({"label sport": 1.0, "label tech": 0.3}, halve) == pytest.approx(0.3)
    assert calibrated_item({}, halve) is None


def test_calibrate_run_stores_and_applies_per_label(tmp_path: Path) -> None:
    cfg = write_task(tmp_path / "task", labels=LABELS, task={"type": "multi_label"},
                     sections={"confidence": {"methods": ["consistency"], "samples": 5}})
    task = load_config(cfg, env={})
    kind = MultiLabel(LABELS)
    llm, human = synthetic(400, seed=5)
    manifest = {"run_id": "r1", "labels": list(LABELS), "config_path": str(cfg), "config": dict(task.raw),
                "members": [{"name": "default", "template_hash": "x", "endpoint": {"model": "m"}}]}
    store = RunStore.create(tmp_path / "run", manifest)
    try:
        store.ingest([Row(Item(i, f"text {i}", k + 1)) for k, i in enumerate(llm)], members=["default"])
        for i, dist in llm.items():
            chosen = tuple(e.removeprefix("label ") for e in dist if e != EMPTY)
            store.put_result(ItemResult(i, "default", "labeled", label=kind.encode(chosen),
                                        confidence=min(dist.values()), distributions={"consistency": dist}))
        store.flush()
        reviewed = [i for i in llm if int(i[1:]) < 300]  # the last 100 items have no human label
        store.put_reviews([Review(i, "ann", kind.encode(human[i])) for i in reviewed])
        combine_run(store, task)
        reports = {r.method: r for r in calibrate_run(store, task, n_splits=5, seed=0)}
        for lab in ("sport", "politics"):  # overconfident: out-of-fold ECE well below the raw one
            r = reports[f"label {lab}"]
            assert r.skipped is None and r.n > 100 and r.ece_after < r.ece_before - 0.1
        assert store.calibrator(ELEMENT + "label sport") is not None
        recs = {rec.id: rec for rec in records(store)}
        assert all(rec.confidence_source == "calibrated" for rec in recs.values())
        unlabelled = [recs[i] for i in llm if int(i[1:]) >= 300 and "label sport" in llm[i] and len(llm[i]) == 1]
        assert unlabelled and all(r.confidence is not None and r.confidence < llm[r.id]["label sport"] + 1e-9
                                  for r in unlabelled if llm[r.id]["label sport"] < 1.0)
        before = {i: r.confidence for i, r in recs.items()}
        combine_run(store, task)  # a combine (a resume) re-applies the stored calibrators
        assert {r.id: r.confidence for r in records(store)} == before
    finally:
        store.close()
