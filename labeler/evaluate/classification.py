"""Agreement of the LLM's labels with reference labels: confusion matrix, accuracy, F1, Cohen's kappa,
per-class precision/recall/over-prediction/FP/FN with bootstrap intervals, and the most frequent confusions.

Statistics that depend only on the confusion matrix are bootstrapped by resampling the matrix's cells from a
multinomial, which is the same distribution as resampling items, at O(n_boot · K²) cost. Point values come
from scikit-learn; the vectorised formulas of `confusion_stats` are used for the resamples only (the tests
check they agree with scikit-learn).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn import metrics as skm

from labeler.evaluate.intervals import Estimate, from_samples
from labeler.evaluate.reference import encode


@dataclass(frozen=True)
class ClassReport:
    """One label. `over_prediction` = #predicted / #true: above 1 the LLM uses the label too often."""

    label: str
    support: int
    predicted: int
    precision: Estimate
    recall: Estimate
    f1: Estimate
    over_prediction: Estimate
    false_positives: Estimate
    false_negatives: Estimate


@dataclass(frozen=True)
class Agreement:
    """LLM labels against reference labels on n items. `confusion` is (K+1, K+1): rows true, columns
    predicted, the last row/column "no label"."""

    n: int
    labels: tuple[str, ...]
    accuracy: Estimate
    f1_macro: Estimate
    f1_micro: Estimate
    f1_weighted: Estimate
    kappa: Estimate
    per_class: tuple[ClassReport, ...]
    confusion: tuple[tuple[int, ...], ...]


def confusion_stats(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics from confusion matrices cm of shape (..., K+1, K+1) (rows true, columns predicted, index K =
    no label). Per-class arrays have shape (..., K); averages (...). Undefined values are NaN and are left out
    of the macro average, as scikit-learn does with zero_division=nan."""
    cm = np.asarray(cm, dtype=float)
    k = cm.shape[-1] - 1
    n = cm.sum(axis=(-2, -1))
    tp = np.diagonal(cm, axis1=-2, axis2=-1)[..., :k]
    true_k = cm.sum(axis=-1)[..., :k]
    pred_k = cm.sum(axis=-2)[..., :k]
    fp, fn = pred_k - tp, true_k - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(pred_k > 0, tp / pred_k, np.nan)
        recall = np.where(true_k > 0, tp / true_k, np.nan)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
        over = np.where(true_k > 0, pred_k / true_k, np.nan)
        tps, fps, fns = tp.sum(-1), fp.sum(-1), fn.sum(-1)
        micro = np.where(2 * tps + fps + fns > 0, 2 * tps / (2 * tps + fps + fns), np.nan)
        weighted = np.nansum(np.nan_to_num(f1) * true_k, axis=-1) / true_k.sum(-1)
        po = np.trace(cm, axis1=-2, axis2=-1) / n
        pe = (cm.sum(-1) * cm.sum(-2)).sum(-1) / n**2
        kappa = np.where(pe < 1, (po - pe) / (1 - pe), np.nan)
    defined = ~np.isnan(f1)
    macro = np.where(defined.any(-1), np.nansum(np.nan_to_num(f1), axis=-1) / np.maximum(defined.sum(-1), 1), np.nan)
    return {
        "accuracy": tp.sum(-1) / n,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "over_prediction": over,
        "fp": fp,
        "fn": fn,
        "f1_macro": macro,
        "f1_micro": micro,
        "f1_weighted": weighted,
        "kappa": kappa,
    }


def agreement(
    y_true: Sequence[Hashable | None],
    y_pred: Sequence[Hashable | None],
    *,
    labels: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Agreement:
    """Accuracy, F1 (macro, micro, weighted), Cohen's kappa and per-class precision, recall, F1,
    over-prediction ratio and FP/FN counts, each with a bootstrap percentile interval.

    y_true, y_pred: (n,) labels (n >= 1). Kappa treats "no label" as a category of its own."""
    if len(y_true) != len(y_pred) or len(y_true) == 0:
        raise ValueError("y_true and y_pred must have the same, non-zero length")
    k = len(labels)
    t, p = encode(y_true, labels), encode(y_pred, labels)
    if (t == k).any():
        raise ValueError("every y_true value must be one of `labels`")
    cm = skm.confusion_matrix(t, p, labels=list(range(k + 1)))
    n = int(cm.sum())
    boot = np.random.default_rng(seed).multinomial(n, cm.ravel() / n, size=n_boot).reshape(n_boot, k + 1, k + 1)
    b = confusion_stats(boot)
    point = confusion_stats(cm)
    cls = list(range(k))
    prec, rec, f1, _ = skm.precision_recall_fscore_support(t, p, labels=cls, zero_division=np.nan)
    avg = {a: skm.f1_score(t, p, labels=cls, average=a, zero_division=np.nan) for a in ("macro", "micro", "weighted")}
    kappa = skm.cohen_kappa_score(t, p, labels=list(range(k + 1))) if not np.isnan(point["kappa"]) else float("nan")
    per_class = []
    for j, lab in enumerate(labels):
        per_class.append(
            ClassReport(
                label=lab,
                support=int(cm[j].sum()),
                predicted=int(cm[:, j].sum()),
                precision=from_samples(prec[j], b["precision"][:, j], level),
                recall=from_samples(rec[j], b["recall"][:, j], level),
                f1=from_samples(f1[j], b["f1"][:, j], level),
                over_prediction=from_samples(point["over_prediction"][j], b["over_prediction"][:, j], level),
                false_positives=from_samples(point["fp"][j], b["fp"][:, j], level),
                false_negatives=from_samples(point["fn"][j], b["fn"][:, j], level),
            )
        )
    return Agreement(
        n=n,
        labels=tuple(labels),
        accuracy=from_samples(skm.accuracy_score(t, p), b["accuracy"], level),
        f1_macro=from_samples(avg["macro"], b["f1_macro"], level),
        f1_micro=from_samples(avg["micro"], b["f1_micro"], level),
        f1_weighted=from_samples(avg["weighted"], b["f1_weighted"], level),
        kappa=from_samples(kappa, b["kappa"], level),
        per_class=tuple(per_class),
        confusion=tuple(tuple(int(x) for x in row) for row in cm),
    )


def row_normalised(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (rows that sum to 0 stay 0): P(predicted | true)."""
    cm = np.asarray(cm, dtype=float)
    sums = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, sums, out=np.zeros_like(cm), where=sums > 0)


def confusion_pairs(
    y_true: Sequence[Hashable | None],
    y_pred: Sequence[Hashable | None],
    *,
    labels: Sequence[str],
    examples: Sequence[str] | None = None,
    top: int = 10,
    n_examples: int = 3,
) -> list[dict[str, Any]]:
    """The most frequent (true, predicted) errors, most frequent first: true, predicted ("(no label)" for
    K), count, share of the true class, and up to `n_examples` of `examples` (one per item, e.g. texts)."""
    names = [*labels, "(no label)"]
    t, p = encode(y_true, labels), encode(y_pred, labels)
    support = np.bincount(t, minlength=len(names))
    pairs = Counter(zip(t[t != p].tolist(), p[t != p].tolist(), strict=True))
    out = []
    for (a, b), count in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:top]:
        idx = np.flatnonzero((t == a) & (p == b))[:n_examples]
        out.append(
            {
                "true": names[a],
                "predicted": names[b],
                "count": count,
                "share_of_true": count / support[a],
                "examples": [examples[i] for i in idx] if examples is not None else [],
            }
        )
    return out
