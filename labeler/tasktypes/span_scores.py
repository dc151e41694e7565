"""The error structure of predicted spans against human spans, with item-bootstrap intervals.

Matching is SemEval-2013's, done by `nervaluate` one item at a time (its counts add up over items, so the
totals equal one call over the corpus, and the per-item counts can be resampled):

    strict   same offsets and type          partial  any overlap, half credit unless offsets are exact
    exact    same offsets, any type         ent_type any overlap, same type

From those: per entity type, exact-match and partial-match precision, recall, F1 and over-prediction
(#predicted / #true of the type); and over all spans, the error structure — correct, type errors (right
offsets, wrong type), boundary errors (overlap, right type), boundary and type errors, missed, spurious.
nervaluate's offsets are inclusive at the end, ours exclusive: `end - 1` is handed over.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from labeler.evaluate.intervals import boot_items, from_samples
from labeler.tasktypes.scores import LEVEL, prf_table

_FIELDS = ("correct", "incorrect", "partial", "missed", "spurious", "actual", "possible")
_SCENARIOS = ("strict", "partial", "exact", "ent_type")
ERRORS = ("correct", "type_error", "boundary_error", "boundary_and_type_error", "missed", "spurious")


def _entities(spans: Any) -> list[dict[str, Any]]:
    return [{"label": s.type, "start": s.start, "end": s.end - 1} for s in spans or ()]


def item_counts(truth: Sequence[Any], pred: Sequence[Any], types: Sequence[str]) -> dict[str, np.ndarray]:
    """Per scenario, (n_items, n_types + 1, len(_FIELDS)) counts; the last type row is all types together."""
    from nervaluate import Evaluator

    out = {s: np.zeros((len(truth), len(types) + 1, len(_FIELDS))) for s in _SCENARIOS}
    for i, (t, p) in enumerate(zip(truth, pred, strict=True)):
        if not t and not p:
            continue
        result = Evaluator([_entities(t)], [_entities(p)], tags=list(types)).evaluate()
        for s in _SCENARIOS:
            for j, kind in enumerate(types):
                r = result["entities"][kind][s]
                out[s][i, j] = [getattr(r, f) for f in _FIELDS]
            r = result["overall"][s]
            out[s][i, -1] = [getattr(r, f) for f in _FIELDS]
    return out


def _prf_inputs(c: np.ndarray, *, half_partial: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tp, fp, fn) such that tp / (tp + fp) and tp / (tp + fn) are SemEval's precision and recall."""
    f = {name: c[..., i] for i, name in enumerate(_FIELDS)}
    tp = f["correct"] + (0.5 * f["partial"] if half_partial else 0.0)
    return tp, f["actual"] - tp, f["possible"] - tp


def evaluate_spans(
    truth: Sequence[Any], pred: Sequence[Any], types: Sequence[str], *, n_boot: int, seed: int
) -> dict[str, Any]:
    if len(truth) != len(pred) or not truth:
        raise ValueError("truth and pred must have the same, non-zero length")
    counts = item_counts(truth, pred, types)
    names = [*types, "all"]
    exact = prf_table(*_prf_inputs(counts["strict"], half_partial=False), names, n_boot=n_boot, seed=seed)
    partial = prf_table(*_prf_inputs(counts["partial"], half_partial=True), names, n_boot=n_boot, seed=seed)
    # the error structure over all spans: counts per item, bootstrapped as sums
    strict, ex, et = (counts[s][:, -1] for s in ("strict", "exact", "ent_type"))
    col = {f: i for i, f in enumerate(_FIELDS)}
    type_err = ex[:, col["correct"]] - strict[:, col["correct"]]
    bound_err = et[:, col["correct"]] - strict[:, col["correct"]]
    per_item = np.stack([
        strict[:, col["correct"]], type_err, bound_err, strict[:, col["incorrect"]] - type_err - bound_err,
        strict[:, col["missed"]], strict[:, col["spurious"]],
    ], axis=1)
    boot = boot_items(len(truth), lambda w: w @ per_item, n_boot=n_boot, seed=seed + 1)
    errors = {e: from_samples(float(per_item[:, i].sum()), boot[:, i], LEVEL).to_dict() for i, e in enumerate(ERRORS)}
    return {"n": len(truth), "types": list(types), "exact": exact, "partial": partial, "errors": errors}
