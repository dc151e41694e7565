"""Tuning multi-label and span tasks (issue 19) on synthetic answers whose error rates are known in advance:
the better prompt variant is chosen, its nested estimate covers its score on unseen items, a label
over-predicted at low confidence is removed by its fitted threshold (and only it), and a span type likewise."""

from __future__ import annotations

import numpy as np
import pytest

from labeler.confidence.elements import EMPTY
from labeler.confidence.thresholds import threshold_value
from labeler.tasktypes.registry import task_type
from labeler.tasktypes.spans import Span
from labeler.tune import elements as el
from labeler.tune.protocol import bootstrap_indices

LABELS = ("sport", "politics", "tech", "business")
MULTI = task_type("multi_label", LABELS)


def world(n: int, seed: int, *, miss: float, spurious: float) -> tuple[list[tuple[str, ...]], el.Preds]:
    """n items with 1-2 true labels; the answers miss each true label with probability `miss` (vote share of
    what is kept: 0.8 or 1.0) and add "tech" where it is wrong with probability `spurious`, at share 0.2."""
    rng = np.random.default_rng(seed)
    truth, values, dists = [], [], []
    for _ in range(n):
        drawn = rng.choice(LABELS, size=int(rng.integers(1, 3)), replace=False)
        true = tuple(sorted((str(x) for x in drawn), key=LABELS.index))
        kept = [lab for lab in true if rng.random() >= miss]
        shares = {lab: float(rng.choice([0.8, 1.0])) for lab in kept}
        if "tech" not in true and rng.random() < spurious:
            kept.append("tech")
            shares["tech"] = 0.2
        value = tuple(sorted(kept, key=LABELS.index))
        truth.append(true)
        values.append(value)
        dists.append({f"label {lab}": shares[lab] for lab in value} or {EMPTY: 1.0})
    return truth, el.Preds(tuple(values), tuple(dists))


def test_a_label_over_predicted_at_low_confidence_gets_a_threshold_that_removes_it() -> None:
    truth, preds = world(120, 0, miss=0.0, spurious=0.4)
    th = el.fit_thresholds(preds, truth, np.arange(120), MULTI)
    assert set(th) == {"tech"} and 0.2 < th["tech"] <= 0.8  # only tech, above its wrong share, below right ones
    after = el.apply(preds, np.arange(120), MULTI, th, 0)
    assert after == truth  # every spurious tech removed, nothing else
    assert el.micro_f1(el.counts(truth, after)) == 1.0 > el.micro_f1(el.counts(truth, preds.values))


def test_the_threshold_keeps_min_labels_and_an_emptied_annotation_says_so() -> None:
    dist = {"label tech": 0.2, "label sport": 0.4}
    assert threshold_value(("sport", "tech"), dist, MULTI, {"tech": 0.5, "sport": 0.5}, min_keep=1)[0] == ("sport",)
    value, d = threshold_value(("sport", "tech"), dist, MULTI, {"tech": 0.5, "sport": 0.5})
    assert value == () and d == {EMPTY: pytest.approx(0.6)}


def test_the_better_variant_is_chosen_and_its_nested_estimate_covers_unseen_items() -> None:
    n = 160
    truth, good = world(n, 1, miss=0.05, spurious=0.4)
    _, bad = world(n, 1, miss=0.35, spurious=0.4)  # the same items (same seed), more true labels missed
    fold_of = el.folds_for(truth, n_splits=5, seed=0)
    boot = bootstrap_indices(n, n_boot=300, seed=0)
    scores = [s for name, p in (("plain", bad), ("careful", good))
              for s in el.score_candidate(name, p, truth, MULTI, kinds=el.KINDS_ALL, fold_of=fold_of, boot=boot)]
    best = el.choose(scores)
    assert (best.candidate, best.correction) == ("careful", "thresholds")
    none = next(s for s in scores if (s.candidate, s.correction) == ("careful", "none"))
    assert best.score > none.score and best.low <= best.score <= best.high
    nest = el.nested({"plain": bad, "careful": good}, truth, MULTI, kinds=el.KINDS_ALL, outer=5, inner=5,
                     n_boot=300, seed=0)
    assert all(p == ("careful", "thresholds") for p in nest.picks)
    # unseen items from the same process, labelled under the thresholds fitted on every tuning item
    th = el.fit_thresholds(good, truth, np.arange(n), MULTI)
    u_truth, u_preds = world(4000, 99, miss=0.05, spurious=0.4)
    unseen = el.micro_f1(el.counts(u_truth, el.apply(u_preds, np.arange(4000), MULTI, th, 0)))
    assert nest.low <= unseen <= nest.high


def test_thresholds_are_skipped_with_a_reason_when_confidences_do_not_vary() -> None:
    truth, preds = world(40, 2, miss=0.1, spurious=0.3)
    flat = el.Preds(preds.values, tuple({k: 1.0 for k in d} for d in preds.dists))
    scores = el.score_candidate("c", flat, truth, MULTI, kinds=el.KINDS_ALL,
                                fold_of=el.folds_for(truth, n_splits=4, seed=0), boot=bootstrap_indices(40, n_boot=50,
                                                                                                        seed=0))
    skipped = next(s for s in scores if s.correction == "thresholds")
    assert skipped.skipped is not None and "cannot tell the elements apart" in skipped.skipped
    assert el.choose(scores).correction == "none"


def test_a_span_type_over_predicted_at_low_confidence_gets_its_threshold() -> None:
    kind = task_type("spans", ("PER", "LOC"))
    rng = np.random.default_rng(3)
    truth, values, dists = [], [], []
    for i in range(60):
        text = f"Ada met Bob in Paris on day {i}."
        per = (Span(0, 3, "PER", "Ada"), Span(8, 11, "PER", "Bob"))
        loc = Span(15, 20, "LOC", "Paris")
        truth.append((*per, loc))
        wrong = Span(24, 27, "LOC", "day") if rng.random() < 0.5 else None
        value = tuple(sorted((*per, loc, *((wrong,) if wrong else ()))))
        names = dict(zip(value, kind.elements(value), strict=True))
        values.append(value)
        dists.append({names[s]: 0.4 if s == wrong else 1.0 for s in value})
        assert text[24:27] == "day"
    preds = el.Preds(tuple(values), tuple(dists))
    th = el.fit_thresholds(preds, truth, np.arange(60), kind)
    assert set(th) == {"LOC"} and 0.4 < th["LOC"] <= 1.0
    assert el.apply(preds, np.arange(60), kind, th, 0) == truth


def test_threshold_rows_keep_the_label_before_and_leave_untouched_rows_alone() -> None:
    from labeler.confidence.thresholds import threshold_rows
    from labeler.store.rows import CombinedRow

    def row(item: str, label: str | None, dist: dict[str, float]) -> CombinedRow:
        return CombinedRow(item, label, min(dist.values()) if dist else None, dist, 1.0, None, 0.0, False, {})

    rows = [row("a", '["sport", "tech"]', {"label sport": 1.0, "label tech": 0.2}),
            row("b", '["tech"]', {"label tech": 0.8}), row("c", None, {}), row("d", '["sport"]', {})]
    out = list(threshold_rows(rows, {"tech": 0.5}, MULTI))
    assert out[0].label == '["sport"]' and out[0].raw_label == '["sport", "tech"]' and out[0].confidence == 1.0
    assert out[1:] == rows[1:]  # confident enough, no label, no element confidences: as they were
    assert list(threshold_rows(rows, None, MULTI)) == rows
