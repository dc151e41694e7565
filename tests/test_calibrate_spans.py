"""Calibration per entity type of a span run (labeler.confidence.per_label), on synthetic data whose
miscalibration is known: a PER span produced by a share s of the samples is right (the human annotation has
the same offsets and type) with probability s**3 (overconfident), a LOC span with probability s (calibrated).
An item has several spans, often several of one type."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fakes import write_task

from labeler.confidence.calibrators import CalData, Selection
from labeler.confidence.elements import EMPTY
from labeler.confidence.per_label import ELEMENT, element_data, element_names, fit_elements, oof_key
from labeler.confidence.reliability import ece
from labeler.confidence.run import calibrate_path, calibrate_run, combine_run, format_reports
from labeler.config import load_config
from labeler.inputs import Row
from labeler.record import records
from labeler.review.candidates import Rules, candidate_from_record, reasons_for
from labeler.store import RunStore
from labeler.store.rows import Review
from labeler.tasktypes.spans import Span, Spans
from labeler.types import Item, ItemResult

TYPES = ("PER", "LOC")
WORDS = ("Ann", "Bob", "Cid", "Dan", "Eve", "Fay")
TEXT = " ".join(WORDS)  # every item has this text after its id: "i7: Ann Bob Cid Dan Eve Fay"
SHARES = (0.2, 0.4, 0.6, 0.8, 1.0)
TRUE_P = {"PER": lambda s: s**3, "LOC": lambda s: s}


def synthetic(n: int, seed: int) -> tuple[dict[str, str], dict[str, tuple[Span, ...]], dict[str, dict[str, float]],
                                           dict[str, tuple[Span, ...]]]:
    """n items: their texts, the LLM's spans (each word a span with probability 1/2, of a random type, its share
    drawn from SHARES; no span: EMPTY at share 0.5, right half the time), its element confidences and the human
    annotations (each LLM span kept with its type's TRUE_P, plus one span the LLM missed on a third of items)."""
    rng = np.random.default_rng(seed)
    texts, llm, dists, human = {}, {}, {}, {}
    for k in range(n):
        item = f"i{k}"
        text = f"{item}: {TEXT}"
        at = len(item) + 2
        ours, theirs, dist = [], [], {}
        for w in WORDS:
            start, at = at, at + len(w) + 1
            if rng.random() < 0.5:
                continue
            span = Span(start, start + len(w), str(rng.choice(TYPES)), w)
            s = float(rng.choice(SHARES))
            ours.append(span)
            dist[Spans(TYPES).elements((span,))[0]] = s
            if rng.random() < TRUE_P[span.type](s):
                theirs.append(span)
        if not ours:
            dist[EMPTY] = 0.5
        if (not ours and rng.random() >= 0.5) or rng.random() < 1 / 3:
            theirs.append(Span(0, len(item), "PER", item))  # missed by the LLM: outside the calibration
        texts[item], llm[item], dists[item], human[item] = text, tuple(ours), dist, tuple(sorted(set(theirs)))
    return texts, llm, dists, human


def test_calibration_group_of_a_span_is_its_type() -> None:
    kind = Spans(("PER", "NEW TYPE", "NEW"))
    (a, b) = kind.elements((Span(0, 3, "PER", "Ada"), Span(4, 12, "NEW TYPE", "New York")))
    assert (kind.calibration_group(a), kind.calibration_group(b)) == ("type PER", "type NEW TYPE")
    assert kind.calibration_group(EMPTY) == EMPTY
    assert element_names(kind) == ["type PER", "type NEW TYPE", "type NEW", EMPTY]
    # two PER spans of one item: two points, two out-of-fold keys
    kind = Spans(TYPES)
    spans = (Span(0, 3, "PER", "Ada"), Span(8, 11, "PER", "Bob"), Span(12, 17, "LOC", "Paris"))
    e1, e2, e3 = kind.elements(spans)
    data = element_data({"a": {e1: 0.8, e2: 0.4, e3: 1.0}}, {"a": spans[:1] + spans[2:]}, kind)
    assert data == {"type PER": ([oof_key("a", e1, "type PER"), oof_key("a", e2, "type PER")], [0.8, 0.4], [1, 0]),
                    "type LOC": ([oof_key("a", e3, "type LOC")], [1.0], [1])}
    assert len(set(data["type PER"][0])) == 2


def test_per_type_calibration_lowers_ece_on_held_out_items() -> None:
    kind = Spans(TYPES)
    _, _, dists, human = synthetic(4000, seed=3)
    train = {i: d for i, d in dists.items() if int(i[1:]) % 2 == 0}
    test = {i: d for i, d in dists.items() if int(i[1:]) % 2 == 1}
    fits = fit_elements(element_data(train, human, kind), element_names(kind), n_splits=5, seed=0, min_items=20)
    held = element_data(test, human, kind)
    for t in TYPES:
        sel = fits[f"type {t}"]
        assert isinstance(sel, Selection)
        _, conf, ok = held[f"type {t}"]
        assert len(conf) > 2000  # ~1.5 spans of each type per item
        before = ece(np.asarray(conf), np.asarray(ok))
        after = ece(sel.calibrator.predict(CalData.from_confidence(conf, ok)), np.asarray(ok))
        if t == "LOC":  # calibrated already: stays calibrated
            assert before < 0.05 and after < 0.05, (t, before, after)
        else:  # mean |s - s**3| over SHARES is 0.24: calibration removes nearly all of it
            assert before > 0.2 and after < 0.05, (t, before, after)


def _span_run(tmp_path: Path, n: int, reviewed: int):
    cfg = write_task(tmp_path / "task", labels=TYPES, task={"type": "spans"},
                     sections={"confidence": {"methods": ["consistency"], "samples": 5}})
    task = load_config(cfg, env={})
    kind = Spans(TYPES)
    texts, llm, dists, human = synthetic(n, seed=5)
    manifest = {"run_id": "r1", "labels": list(TYPES), "config_path": str(cfg), "config": dict(task.raw),
                "members": [{"name": "default", "template_hash": "x", "endpoint": {"model": "m"}}]}
    store = RunStore.create(tmp_path / "run", manifest)
    store.ingest([Row(Item(i, texts[i], k + 1)) for k, i in enumerate(texts)], members=["default"])
    for i, dist in dists.items():
        store.put_result(ItemResult(i, "default", "labeled", label=kind.encode(llm[i]),
                                    confidence=min(dist.values()), distributions={"consistency": dist}))
    store.flush()
    store.put_reviews([Review(i, "ann", kind.encode(human[i])) for i in texts if int(i[1:]) < reviewed])
    return task, store, dists


def test_calibrate_run_fits_per_type_and_every_combine_applies_it(tmp_path: Path) -> None:
    task, store, dists = _span_run(tmp_path, 600, reviewed=450)
    try:
        combine_run(store, task)
        reports = {r.method: r for r in calibrate_run(store, task, n_splits=5, seed=0)}
        assert set(reports) == {"type PER", "type LOC", EMPTY}
        per = reports["type PER"]  # overconfident: out-of-fold ECE well below the raw one
        assert per.skipped is None and per.n > 500 and per.ece_after < per.ece_before - 0.1
        assert store.calibrator(ELEMENT + "type PER") is not None
        table = format_reports(list(reports.values()))
        assert "type PER" in table and "type LOC" in table and "ECE before → after" in table
        recs = {rec.id: rec for rec in records(store)}
        assert all(rec.confidence_source == "calibrated" for rec in recs.values())
        # an unlabelled item's PER spans go through the PER calibrator: below their raw share where it is < 1
        # (s**3 < s); its element confidences, which routing names, are the calibrated ones
        unlabelled = [i for i in dists if int(i[1:]) >= 450]
        per_spans = [(i, e, c) for i in unlabelled for e, c in dists[i].items() if " PER " in e and c < 1.0]
        assert per_spans
        for i, e, c in per_spans:
            assert recs[i].combined is not None and recs[i].combined.distribution[e] < c
        i, e, c = per_spans[0]
        rec = recs[i]
        cand = candidate_from_record(rec, Spans(TYPES))
        assert cand is not None and cand.elements == rec.combined.distribution  # type: ignore[union-attr]
        reason = reasons_for(cand, Rules(threshold=0.99))[0]
        assert f"{e} {rec.combined.distribution[e]:.2f}" in reason  # type: ignore[union-attr]
        assert rec.confidence == min(rec.combined.distribution.values())  # type: ignore[union-attr]
        before = {r.id: (r.confidence, dict(r.combined.distribution)) for r in records(store)}  # type: ignore[union-attr]
        combine_run(store, task)  # a combine (a resume) re-applies the stored calibrators, to the raw shares
        assert {r.id: (r.confidence, dict(r.combined.distribution)) for r in records(store)} == before  # type: ignore[union-attr]
        again = {r.method: r for r in calibrate_run(store, task, n_splits=5, seed=0)}  # fitted on raw shares again
        assert again["type PER"].ece_before == per.ece_before
    finally:
        store.close()


def test_labeler_calibrate_on_a_span_run(tmp_path: Path) -> None:
    _, store, _ = _span_run(tmp_path, 300, reviewed=300)
    store.close()
    reports = {r.method: r for r in calibrate_path(tmp_path / "run")}
    assert reports["type PER"].skipped is None and reports["type PER"].ece_after < reports["type PER"].ece_before
