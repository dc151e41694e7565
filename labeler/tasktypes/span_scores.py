"""The error structure of predicted spans against human spans, with item-bootstrap intervals.

Matching is SemEval-2013's, done by `nervaluate` one item at a time (its counts add up over items, so the
totals equal one call over the corpus, and the per-item counts can be resampled):

    strict   same offsets and type          partial  any overlap, half credit unless offsets are exact
    exact    same offsets, any type         ent_type any overlap, same type

From those: per entity type, exact-match and partial-match precision, recall, F1 and over-prediction
(#predicted / #true of the type); and per type and over all spans, the error structure of the strict
matching — correct, type errors (right offsets, wrong type), boundary errors (overlap, right type), boundary
and type errors, missed, spurious. nervaluate's strict match says which predicted span is correct, incorrect
or spurious and which human span is missed; an incorrect one is a type error when a human span has its
offsets, else a boundary error when an overlapping human span has its type, else both. Errors count under
the human span's type (a spurious span under its own), so per type and in all, correct + type + boundary +
both + missed = the human spans, and correct + type + boundary + both + spurious = the predicted spans
(one-to-one, as nervaluate matches). nervaluate's offsets are inclusive at the end, ours exclusive:
`end - 1` is handed over.
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


Event = tuple[str, str, Any, Any]  # (error, the type it counts under, the human span or None, the LLM span or None)


def _events(t: Sequence[Any], p: Sequence[Any], strict: Any) -> list[Event]:
    """The error structure of one item, span by span, from nervaluate's strict-match indices."""
    out: list[Event] = [("correct", p[k].type, None, p[k]) for _, k in strict.correct_indices]
    for _, k in strict.incorrect_indices:
        s = p[k]
        same = [x for x in t if (x.start, x.end) == (s.start, s.end)]
        near = [x for x in t if x.start < s.end and s.start < x.end]
        if same:
            out.append(("type_error", same[0].type, same[0], s))
        elif any(x.type == s.type for x in near):
            out.append(("boundary_error", s.type, next(x for x in near if x.type == s.type), s))
        elif near:
            out.append(("boundary_and_type_error", near[0].type, near[0], s))
    out += [("missed", t[k].type, t[k], None) for _, k in strict.missed_indices]
    out += [("spurious", p[k].type, None, p[k]) for _, k in strict.spurious_indices]
    return out


def _examples(events: Sequence[Event], types: Sequence[str], n: int = 3) -> dict[str, Any]:
    """Which types are mistaken for which (type errors and both), with example span texts; and per type,
    example texts of missed and of spurious spans."""
    pairs: dict[tuple[str, str], list[str]] = {}
    missed: dict[str, list[str]] = {k: [] for k in types}
    spurious: dict[str, list[str]] = {k: [] for k in types}
    for error, kind, h, s in events:
        if error in ("type_error", "boundary_and_type_error"):
            pairs.setdefault((h.type, s.type), []).append(h.text if h.text == s.text else f"{h.text} → {s.text}")
        elif error == "missed" and h.text and len(missed[kind]) < n:
            missed[kind].append(h.text)
        elif error == "spurious" and s.text and len(spurious[kind]) < n:
            spurious[kind].append(s.text)
    confusions = [{"true": a, "predicted": b, "count": len(v), "examples": [x for x in v if x][:n]}
                  for (a, b), v in sorted(pairs.items(), key=lambda kv: (-len(kv[1]), kv[0]))]
    return {"type_confusions": confusions, "missed_examples": missed, "spurious_examples": spurious}


def item_counts(
    truth: Sequence[Any], pred: Sequence[Any], types: Sequence[str]
) -> tuple[dict[str, np.ndarray], np.ndarray, list[Event]]:
    """Per scenario, (n_items, n_types + 1, len(_FIELDS)) counts, the last type row all types together; the
    (n_items, n_types, len(ERRORS)) error structure; and its events, span by span."""
    from nervaluate import Evaluator

    out = {s: np.zeros((len(truth), len(types) + 1, len(_FIELDS))) for s in _SCENARIOS}
    errors = np.zeros((len(truth), len(types), len(ERRORS)))
    events: list[Event] = []
    known = set(types)
    col = {name: j for j, name in enumerate(types)}
    for i, (t, p) in enumerate(zip(truth, pred, strict=True)):
        if not t and not p:
            continue
        t, p = [x for x in t or () if x.type in known], [x for x in p or () if x.type in known]
        # loader="dict": nervaluate infers the format from the first entity, which an empty item lacks
        result = Evaluator([_entities(t)], [_entities(p)], tags=list(types), loader="dict").evaluate()
        for s in _SCENARIOS:
            for j, kind in enumerate(types):
                entity = result["entities"].get(kind)
                if entity is not None:  # nervaluate leaves out the types absent from the item
                    out[s][i, j] = [getattr(entity[s], f) for f in _FIELDS]
            r = result["overall"][s]
            out[s][i, -1] = [getattr(r, f) for f in _FIELDS]
        found = _events(t, p, result["overall_indices"]["strict"])
        for error, kind, _, _ in found:
            errors[i, col[kind], ERRORS.index(error)] += 1
        events += found
    return out, errors, events


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
    counts, per_item, events = item_counts(truth, pred, types)
    names = [*types, "all"]
    exact = prf_table(*_prf_inputs(counts["strict"], half_partial=False), names, n_boot=n_boot, seed=seed,
                      pooled=True)
    partial = prf_table(*_prf_inputs(counts["partial"], half_partial=True), names, n_boot=n_boot, seed=seed,
                        pooled=True)
    # the error structure per type and over all spans: counts per item, bootstrapped as sums
    flat = np.concatenate([per_item.reshape(len(truth), -1), per_item.sum(1)], axis=1)  # (n, (K + 1) * E)
    boot = boot_items(len(truth), lambda w: w @ flat, n_boot=n_boot, seed=seed + 1)
    e = len(ERRORS)
    point = flat.sum(0)

    def structure(row: int) -> dict[str, dict[str, float]]:
        return {err: from_samples(float(point[row * e + i]), boot[:, row * e + i], LEVEL).to_dict()
                for i, err in enumerate(ERRORS)}

    errors_by_type = {kind: structure(j) for j, kind in enumerate(types)}
    return {"n": len(truth), "types": list(types), "exact": exact, "partial": partial,
            "errors": structure(len(types)), "errors_by_type": errors_by_type, **_examples(events, types)}
