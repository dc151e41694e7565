"""The run-level bias correction: a synthetic model with a known prior bias whose correction, stored in the
run, recovers the unbiased labels; the raw label is kept (store, record, export); every combine (a resume)
re-applies it; a task's [correction] is applied from the run's first combine and named in the manifest."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from fakes import FakeBackend, completion, item_number, tok
from test_runner import _patch_backends, make_task, run

from labeler.confidence.correct import correct_dist, correct_row, fit_offsets_for
from labeler.confidence.run import combine_run
from labeler.export import item_rows
from labeler.label import pipeline
from labeler.record import records
from labeler.store import RunStore
from labeler.store.rows import CombinedRow
from labeler.store.tune_tables import StoredCorrection
from labeler.types import Request

LABELS = ("business", "sport", "tech")
PRIOR = np.array([12.0, 1.0, 1.0]) / 14.0  # the model multiplies business's probability by 12


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(the biased model's distributions (n, 3), the unbiased posterior's argmax (n,))."""
    rng = np.random.default_rng(seed)
    post = rng.dirichlet([0.6, 0.6, 0.6], size=n)
    biased = post * PRIOR
    return biased / biased.sum(1, keepdims=True), post.argmax(1)


def biased_backend(probs: np.ndarray) -> FakeBackend:
    def answer(request: Request) -> object:
        p = probs[item_number(request) - 1]
        label = LABELS[int(np.argmax(p))]
        top = {lab: float(max(q, 1e-12)) for lab, q in zip(LABELS, p, strict=True)}
        lp = [tok('{"label": "', 1.0), tok(label, top[label], top), tok('"}', 1.0)]
        return completion(json.dumps({"label": label}), logprobs=lp)

    return FakeBackend(answer)  # type: ignore[arg-type]


CONTEXTUAL = StoredCorrection(
    kind="contextual",
    offsets={lab: float(-math.log(p)) for lab, p in zip(LABELS, PRIOR, strict=True)},
    content_free=dict(zip(LABELS, PRIOR.tolist(), strict=True)),
    source="a synthetic model's known prior",
)


def test_correct_dist_is_a_softmax_of_log_p_plus_offsets() -> None:
    got = correct_dist({"business": 0.6, "sport": 0.3, "tech": 0.1}, {"business": -math.log(6)}, LABELS)
    assert got == pytest.approx({"business": 0.2, "sport": 0.6, "tech": 0.2})  # 0.1, 0.3, 0.1 renormalised
    row = CombinedRow("a", "business", 0.6, {"business": 0.6, "sport": 0.3, "tech": 0.1}, 1.0, 0.5, 0.0, False, {})
    fixed = correct_row(row, StoredCorrection("offsets_f1", {"business": -math.log(6)}), LABELS)
    assert (fixed.label, fixed.raw_label, fixed.confidence) == ("sport", "business", pytest.approx(0.6))
    failed = CombinedRow("b", None, None, {}, None, None, None, False, {})
    assert correct_row(failed, CONTEXTUAL, LABELS).label is None


def test_fitted_offsets_of_every_kind_recover_the_unbiased_labels() -> None:
    probs, unbiased = synthetic(1500, 1)
    cf = np.tile(PRIOR, (3, 1))
    rng = np.random.default_rng(2)
    y = np.array([rng.choice(3, p=p) for p in (probs / PRIOR) / (probs / PRIOR).sum(1, keepdims=True)])
    assert np.mean(probs.argmax(1) == unbiased) < 0.7  # the bias is real
    for kind in ("contextual", "offsets_f1", "offsets_ll", "contextual+offsets_ll"):
        b = fit_offsets_for(kind, probs[:300], y[:300], content_free=cf)
        pred = (np.log(probs[300:]) + b).argmax(1)
        assert np.mean(pred == unbiased[300:]) > 0.88, kind


async def test_a_stored_correction_changes_labels_keeps_the_raw_ones_and_survives_a_recombine(tmp_path: Path) -> None:
    probs, unbiased = synthetic(60)
    gold = [LABELS[i] for i in unbiased]
    task = make_task(tmp_path, gold)
    store = await run(task, tmp_path, {"default": biased_backend(probs)})
    combine_run(store, task)
    raw = [r.label for r in records(store)]
    assert raw == [LABELS[i] for i in probs.argmax(1)] and raw != gold
    store.put_correction(CONTEXTUAL)
    combine_run(store, task)
    for _ in range(2):  # and again, as a resume does
        recs = list(records(store))
        assert [r.label for r in recs] == gold
        assert [r.combined.raw_label for r in recs if r.combined] == raw
        assert all(r.confidence_source == "corrected" for r in recs)
        combine_run(store, task)
    rows = list(item_rows(store))
    assert [r["raw_label"] for r in rows] == raw and [r["label"] for r in rows] == gold
    assert [r["corrected"] for r in rows] == [a != b for a, b in zip(raw, gold, strict=True)]
    manifest = store.manifest
    assert manifest["correction"]["kind"] == "contextual" and (store.run_dir / "correction.json").exists()
    store.close()


async def test_a_tasks_correction_applies_from_the_first_combine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probs, unbiased = synthetic(20, 3)
    gold = [LABELS[i] for i in unbiased]
    offsets = dict(CONTEXTUAL.offsets)
    task = make_task(tmp_path, gold, sections={"correction": {"kind": "contextual", "offsets": offsets}})
    _patch_backends(monkeypatch, lambda name: biased_backend(probs))
    run_dir, _ = await pipeline.start_run(task, run_dir=tmp_path / "runs" / "r", show_progress=False)
    store = RunStore.open(run_dir)
    assert [r.label for r in records(store)] == gold
    stored = store.correction()
    assert stored is not None and stored.offsets == pytest.approx(offsets)
    assert store.manifest["correction"]["file"] == "correction.json"
    store.close()
