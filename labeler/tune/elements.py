"""The tuning protocol for multi-label and span tasks, pure: the task type's own score, the per-class thresholds
fitted inside folds, the one-SE choice, and nested cross-validation of the whole choice.

The score is micro-F1 over elements: multi-label, over (item, label) pairs; spans, over exact matches (same
offsets and type, SemEval's strict match). Its bootstrap interval resamples items (the same resamples for every
candidate). The "correction" is a per-class minimum element confidence (labeler.confidence.thresholds): a
label, or a span type, whose low-confidence predictions are more often wrong than right loses them. It is
fitted on the training folds by coordinate ascent on micro-F1 and scored on the held-out fold only.

Shapes: a candidate's answers are `Preds` — per tuning item, the decoded annotation and its element
confidences (element name -> confidence; empty when the run draws no samples). `truth`: per item the human
annotation, decoded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from labeler.confidence.thresholds import element_class, threshold_value
from labeler.tasktypes import TaskType
from labeler.tune.protocol import bootstrap_indices, one_se_choice, stratified_folds

NONE, THRESHOLDS = "none", "thresholds"
KINDS_ALL = (NONE, THRESHOLDS)


@dataclass(frozen=True)
class Preds:
    """One candidate's answers on the n tuning items."""

    values: tuple[object, ...]  # (n,) decoded annotations (None: the item failed)
    dists: tuple[Mapping[str, float], ...]  # (n,) element name -> confidence


@dataclass(frozen=True)
class ElementScore:
    candidate: str
    correction: str
    score: float  # held-out micro-F1
    low: float
    high: float
    se: float
    oof: tuple[object, ...]  # (n,) each item's annotation, thresholds fitted without its fold
    skipped: str | None = None  # why this correction was not tried


def keys(value: object) -> set[object]:
    """What an element is matched by: a label name, or a span's (start, end, type)."""
    return {p if isinstance(p, str) else (p.start, p.end, p.type) for p in value or ()}  # type: ignore[attr-defined]


def counts(truth: Sequence[object], pred: Sequence[object]) -> np.ndarray:
    """(n, 3) per item: true positives, false positives, false negatives."""
    out = np.zeros((len(truth), 3))
    for i, (t, p) in enumerate(zip(truth, pred, strict=True)):
        kt, kp = keys(t), keys(p)
        out[i] = (len(kt & kp), len(kp - kt), len(kt - kp))
    return out


def micro_f1(c: np.ndarray) -> float:
    tp, fp, fn = c.sum(0) if c.ndim == 2 else c
    return float(2 * tp / (2 * tp + fp + fn)) if 2 * tp + fp + fn > 0 else 1.0


def f1_stats(c: np.ndarray, boot: np.ndarray, level: float = 0.95) -> tuple[float, float, float, float]:
    """Micro-F1 of per-item counts `c` (n, 3), its bootstrap percentile interval and standard error."""
    s = c[boot].sum(1)  # (B, 3)
    denom = 2 * s[:, 0] + s[:, 1] + s[:, 2]
    values = np.where(denom > 0, 2 * s[:, 0] / np.maximum(denom, 1e-12), 1.0)
    a = (1 - level) / 2
    se = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return micro_f1(c), float(np.quantile(values, a)), float(np.quantile(values, 1 - a)), se


def varies(preds: Preds) -> str | None:
    """None when the element confidences vary (thresholds can tell elements apart), else why not."""
    confs = [float(v) for d in preds.dists for v in d.values()]
    if not confs:
        return "the answers carry no element confidences (the run draws no samples: confidence.samples)"
    if max(confs) - min(confs) < 1e-9:
        return f"every element confidence is {confs[0]:.2f}: a threshold cannot tell the elements apart"
    return None


def apply(preds: Preds, idx: np.ndarray, kind: TaskType, th: Mapping[str, float], min_keep: int) -> list[object]:
    return [threshold_value(preds.values[i], preds.dists[i], kind, th, min_keep=min_keep)[0] for i in idx]


def fit_thresholds(
    preds: Preds, truth: Sequence[object], idx: np.ndarray, kind: TaskType, *, passes: int = 2
) -> dict[str, float]:
    """class -> the minimum element confidence that maximises micro-F1 on the items `idx`, by coordinate ascent
    (each class in turn, the others held); a tie keeps more elements (the lower threshold)."""
    cls, conf, ok, n_true = [], [], [], 0
    for i in idx:
        value, dist, true = preds.values[i], preds.dists[i], keys(truth[i])
        n_true += len(true)
        parts = tuple(value or ())
        for p, name in zip(parts, kind.elements(value), strict=True):
            cls.append(element_class(p))
            conf.append(float(dist.get(name, 1.0)))
            ok.append(float(next(iter(keys((p,)))) in true))
    if not cls:
        return {}
    c_arr, v_arr, o_arr = np.asarray(cls), np.asarray(conf), np.asarray(ok)
    th = dict.fromkeys(sorted(set(cls)), 0.0)

    def f1(kept: np.ndarray) -> float:
        tp, fp = float((o_arr * kept).sum()), float(((1 - o_arr) * kept).sum())
        fn = n_true - tp
        return 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn > 0 else 1.0

    for _ in range(passes):
        for c in th:
            mine = c_arr == c
            u = np.unique(v_arr[mine])
            top = (float(u[-1]) + 1.0) / 2 if u[-1] < 1.0 else float(u[-1]) + 1e-6  # drops every element of c
            options = [0.0, *((u[:-1] + u[1:]) / 2).tolist(), top]
            others = np.ones(len(v_arr), dtype=bool)
            for d, t in th.items():
                if d != c:
                    others &= ~((c_arr == d) & (v_arr < t))
            best, best_f1 = 0.0, -1.0
            for t in options:
                value = f1(others & ~(mine & (v_arr < t)))
                if value > best_f1 + 1e-12:
                    best, best_f1 = t, value
            th[c] = round(float(best), 6)
    return {c: t for c, t in th.items() if t > 0}


def score_candidate(
    name: str,
    preds: Preds,
    truth: Sequence[object],
    kind: TaskType,
    *,
    kinds: Sequence[str],
    fold_of: np.ndarray,
    boot: np.ndarray,
    min_keep: int = 0,
) -> list[ElementScore]:
    """One ElementScore per correction kind: "none" scores the answers as they are; "thresholds" fits the
    thresholds on the other folds and applies them to each fold (skipped, with the reason, when the element
    confidences do not vary)."""
    n = len(truth)
    out = []
    for k in kinds:
        if k == NONE:
            oof = list(preds.values)
        elif k == THRESHOLDS:
            why = varies(preds)
            if why is not None:
                out.append(ElementScore(name, k, float("nan"), float("nan"), float("nan"), 0.0, (), why))
                continue
            oof = [None] * n
            for f in sorted(set(fold_of.tolist())):
                train, test = np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)
                th = fit_thresholds(preds, truth, train, kind)
                for i, v in zip(test, apply(preds, test, kind, th, min_keep), strict=True):
                    oof[i] = v
        else:
            raise ValueError(f"an elementwise correction is {NONE!r} or {THRESHOLDS!r}, got {k!r}")
        value, low, high, se = f1_stats(counts(truth, oof), boot)
        out.append(ElementScore(name, k, value, low, high, se, tuple(oof)))
    return out


def choose(scores: Sequence[ElementScore], *, one_se: bool = True) -> ElementScore:
    """The one-standard-error rule over the scores that were tried (earlier = simpler wins within one SE)."""
    tried = [s for s in scores if s.skipped is None]
    return one_se_choice(tried, lambda s: s.score, lambda s: s.se, one_se=one_se)


def folds_for(truth: Sequence[object], *, n_splits: int, seed: int) -> np.ndarray:
    """(n,) fold of each item, stratified by how many elements the human annotation has (0, 1, 2, 3+)."""
    strata = np.asarray([min(len(keys(t)), 3) for t in truth], dtype=int)
    return stratified_folds(strata, 4, n_splits=n_splits, seed=seed)


@dataclass(frozen=True)
class NestedScore:
    score: float
    low: float
    high: float
    picks: tuple[tuple[str, str], ...]


def nested(
    runs: Mapping[str, Preds],
    truth: Sequence[object],
    kind: TaskType,
    *,
    kinds: Sequence[str],
    outer: int,
    inner: int,
    n_boot: int,
    seed: int,
    min_keep: int = 0,
) -> NestedScore:
    """The whole choice (candidate, correction, one-SE rule) repeated on each outer fold's training items; the
    chosen thresholds fitted there predict the outer fold, which no choice saw. Micro-F1 of those predictions."""
    n = len(truth)
    fold_of = folds_for(truth, n_splits=outer, seed=seed + 1)
    pred: list[object] = [None] * n
    picks = []
    for f in range(outer):
        train, test = np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)
        if not len(test):
            continue
        sub_truth = [truth[int(i)] for i in train]
        in_folds = folds_for(sub_truth, n_splits=inner, seed=seed + 2 + f)
        in_boot = bootstrap_indices(len(train), n_boot=max(50, n_boot // 5), seed=seed + f)
        subs = {name: Preds(tuple(p.values[i] for i in train), tuple(p.dists[i] for i in train))
                for name, p in runs.items()}
        scores = [s for name, p in subs.items() for s in score_candidate(
            name, p, sub_truth, kind, kinds=kinds, fold_of=in_folds, boot=in_boot, min_keep=min_keep)]
        best = choose(scores)
        th = fit_thresholds(runs[best.candidate], truth, train, kind) if best.correction == THRESHOLDS else {}
        for i, v in zip(test, apply(runs[best.candidate], test, kind, th, min_keep), strict=True):
            pred[i] = v
        picks.append((best.candidate, best.correction))
    value, low, high, _ = f1_stats(counts(truth, pred), bootstrap_indices(n, n_boot=n_boot, seed=seed))
    return NestedScore(value, low, high, tuple(picks))
