"""The maths of evaluation: agreement, error structure, calibration, audit estimates. Pure functions.

Conventions
    labels      the task's label set, length K. Values are encoded as indices 0..K-1; anything else (None: the
                LLM failed; a label outside the set) becomes K, "no label", which is always an error.
    y_true      (n,) the human (reference) label of each item; y_pred (n,) the LLM's label.
    Estimate    a point value with a percentile interval (bootstrap) or a CLT/Wilson interval (audit).

Bootstrap. Items are resampled with replacement `n_boot` times (seeded). Statistics that depend only on the
confusion matrix (accuracy, F1, precision, recall, over-prediction, FP/FN, kappa) resample the matrix's cells
from a multinomial, which is the same distribution as resampling items, at O(n_boot · K²) cost; the others
weight items by multinomial counts, in chunks. Point values come from scikit-learn where it has the metric;
the vectorised formulas are used for the resamples only (tests check they agree with scikit-learn).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats
from sklearn import metrics as skm

# --- basics ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A value and its interval (`level`, e.g. 0.95). NaN when undefined on the data at hand."""

    value: float
    low: float
    high: float

    def excludes(self, x: float) -> bool:
        return bool(self.low > x or self.high < x)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def reference_label(humans: Mapping[str, str], *, labels: Sequence[str]) -> str | None:
    """An item's reference label from its human labels (reviewer → label; the input's gold column is the
    reviewer "gold"): the majority; a tie goes to gold if gold is among the tied, else to the earlier
    label in `labels`. None when nobody labeled the item. Every stage that needs "the human label" uses
    this (calibration, evaluation)."""
    if not humans:
        return None
    counts = Counter(humans.values())
    top = max(counts.values())
    tied = [v for v, c in counts.items() if c == top]
    if len(tied) == 1:
        return tied[0]
    if humans.get("gold") in tied:
        return humans["gold"]
    order = {lab: i for i, lab in enumerate(labels)}
    return min(tied, key=lambda v: (order.get(v, len(order)), v))


def encode(values: Sequence[Hashable | None], labels: Sequence[str]) -> np.ndarray:
    """(n,) int codes: the index of each value in `labels`, or len(labels) for None and unknown values."""
    index: dict[Hashable, int] = {lab: i for i, lab in enumerate(labels)}
    return np.fromiter((index.get(v, len(labels)) for v in values), dtype=np.int64, count=len(values))


def _z(level: float) -> float:
    return float(stats.norm.ppf(0.5 + level / 2))


def _interval(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0 of (n_boot, ...) samples, ignoring NaN; NaN where all are NaN."""
    s = np.asarray(samples, dtype=float)
    flat = s.reshape(s.shape[0], -1)
    lo = np.full(flat.shape[1], np.nan)
    hi = np.full(flat.shape[1], np.nan)
    ok = ~np.isnan(flat).all(axis=0)
    if ok.any():
        q = (1 - level) / 2
        lo[ok], hi[ok] = np.nanquantile(flat[:, ok], [q, 1 - q], axis=0)
    return lo.reshape(s.shape[1:]), hi.reshape(s.shape[1:])


def _estimate(value: float, samples: np.ndarray, level: float) -> Estimate:
    lo, hi = _interval(samples, level)
    return Estimate(float(value), float(lo), float(hi))


def _item_weights(n: int, *, n_boot: int, seed: int, max_cells: int = 4_000_000) -> Iterator[np.ndarray]:
    """Bootstrap weights: (chunk, n) multinomial counts summing to n per row, n_boot rows in all."""
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, max_cells // max(n, 1)))
    done = 0
    while done < n_boot:
        size = min(chunk, n_boot - done)
        draws = rng.integers(0, n, size=(size, n)) + n * np.arange(size)[:, None]  # n items drawn per row
        yield np.bincount(draws.ravel(), minlength=size * n).reshape(size, n).astype(float)
        done += size


def _boot_items(n: int, fn: Any, *, n_boot: int, seed: int) -> np.ndarray:
    """Stack fn(weights) over the bootstrap chunks: fn maps (chunk, n) weights to (chunk, ...) values."""
    return np.concatenate([np.asarray(fn(w), dtype=float) for w in _item_weights(n, n_boot=n_boot, seed=seed)])


# --- agreement with a reference -----------------------------------------------------------------------------


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
                precision=_estimate(prec[j], b["precision"][:, j], level),
                recall=_estimate(rec[j], b["recall"][:, j], level),
                f1=_estimate(f1[j], b["f1"][:, j], level),
                over_prediction=_estimate(point["over_prediction"][j], b["over_prediction"][:, j], level),
                false_positives=_estimate(point["fp"][j], b["fp"][:, j], level),
                false_negatives=_estimate(point["fn"][j], b["fn"][:, j], level),
            )
        )
    return Agreement(
        n=n,
        labels=tuple(labels),
        accuracy=_estimate(skm.accuracy_score(t, p), b["accuracy"], level),
        f1_macro=_estimate(avg["macro"], b["f1_macro"], level),
        f1_micro=_estimate(avg["micro"], b["f1_micro"], level),
        f1_weighted=_estimate(avg["weighted"], b["f1_weighted"], level),
        kappa=_estimate(kappa, b["kappa"], level),
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


# --- several humans per item -------------------------------------------------------------------------------


def _unit_counts(units: Sequence[Sequence[Hashable]], labels: Sequence[str]) -> np.ndarray:
    """(U, K) how many annotators gave each label to each unit (values outside `labels` ignored)."""
    counts = np.zeros((len(units), len(labels)))
    for u, values in enumerate(units):
        codes = encode(list(values), labels)
        counts[u] = np.bincount(codes[codes < len(labels)], minlength=len(labels))
    return counts


def _unit_coincidences(counts: np.ndarray) -> np.ndarray:
    """(U, K, K) each pairable unit's contribution to the coincidence matrix: (N Nᵀ − diag N) / (m − 1)."""
    m = counts.sum(axis=1)
    pairable = m >= 2
    c = counts[pairable]
    o = c[:, :, None] * c[:, None, :] - np.einsum("uk,kl->ukl", c, np.eye(c.shape[1]))
    out = np.zeros((len(counts), counts.shape[1], counts.shape[1]))
    out[pairable] = o / (m[pairable] - 1)[:, None, None]
    return out


def coincidence_matrix(units: Sequence[Sequence[Hashable]], *, labels: Sequence[str]) -> np.ndarray:
    """(K, K) Krippendorff's coincidence matrix: each unit with m >= 2 values adds every ordered pair of its
    values (from different annotators) with weight 1/(m − 1). Symmetric; its total is the pairable values."""
    return _unit_coincidences(_unit_counts(units, labels)).sum(axis=0)


def _alpha_from_coincidences(o: np.ndarray) -> np.ndarray:
    """Nominal alpha from (..., K, K) coincidence matrices: 1 − (n − 1) Σ_{c≠k} o_ck / Σ_{c≠k} n_c n_k."""
    n_c = o.sum(axis=-1)
    n = n_c.sum(axis=-1)
    observed = n - np.trace(o, axis1=-2, axis2=-1)
    expected = n**2 - (n_c**2).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((expected > 0) & (n > 1), 1 - (n - 1) * observed / expected, np.nan)


def krippendorff_alpha(
    units: Sequence[Sequence[Hashable]],
    *,
    labels: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Estimate:
    """Krippendorff's alpha for nominal data, with a bootstrap interval over units.

    units: one sequence per item holding the labels its annotators gave (any number; items with fewer than
    two are not pairable and do not count). alpha = 1 − D_o/D_e = 1 − (n − 1) Σ_{c≠k} o_ck / Σ_{c≠k} n_c n_k,
    with o the coincidence matrix, n_c its row sums and n the number of pairable values."""
    per_unit = _unit_coincidences(_unit_counts(units, labels))
    value = float(_alpha_from_coincidences(per_unit.sum(axis=0)))
    flat = per_unit.reshape(len(per_unit), -1)
    k = len(labels)
    samples = _boot_items(
        len(units), lambda w: _alpha_from_coincidences((w @ flat).reshape(-1, k, k)), n_boot=n_boot, seed=seed
    )
    return _estimate(value, samples, level)


@dataclass(frozen=True)
class HumanBand:
    """Is the LLM inside the human disagreement band? On items with two or more human labels, each human j
    in turn is held out: `human_loo` is how often j agrees with the majority of the other humans,
    `llm_vs_others` how often the LLM agrees with that same majority (ties count 1/#tied), and `difference`
    the paired difference (LLM − human). `llm_vs_majority` uses the majority of all the item's humans.
    verdict: "inside" (difference interval holds 0), "above" or "below"."""

    n_items: int
    n_judgements: int
    human_loo: Estimate
    llm_vs_others: Estimate
    difference: Estimate
    llm_vs_majority: Estimate
    per_reviewer: Mapping[str, float]
    verdict: str


def _modal_share(votes: Sequence[str], value: str | None) -> float:
    """1/|M| if value is one of the |M| most frequent votes, else 0."""
    counts = Counter(votes)
    top = max(counts.values())
    modal = [v for v, c in counts.items() if c == top]
    return (value in modal) / len(modal)


def human_band(
    humans: Sequence[Mapping[str, str]],
    llm: Sequence[str | None],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> HumanBand | None:
    """humans: (n,) reviewer → label for each item; llm: (n,) the LLM's label. None if no item has 2+ humans."""
    rows = [(h, y) for h, y in zip(humans, llm, strict=True) if len(h) >= 2]
    if not rows:
        return None
    hum, mach, count, major = (np.zeros(len(rows)) for _ in range(4))
    by_reviewer: dict[str, list[float]] = {}
    for i, (h, y) in enumerate(rows):
        for j, label in h.items():
            others = [v for r, v in h.items() if r != j]
            s = _modal_share(others, label)
            hum[i] += s
            mach[i] += _modal_share(others, y)
            by_reviewer.setdefault(j, []).append(s)
        count[i] = len(h)
        major[i] = _modal_share(list(h.values()), y)
    cols = np.stack([hum, mach, count, major], axis=1)

    def ratios(w: np.ndarray) -> np.ndarray:
        s = w @ cols
        return np.stack([s[:, 0] / s[:, 2], s[:, 1] / s[:, 2], (s[:, 1] - s[:, 0]) / s[:, 2], s[:, 3] / len(rows)], 1)

    samples = _boot_items(len(rows), ratios, n_boot=n_boot, seed=seed)
    point = ratios(np.ones((1, len(rows))))[0]
    est = [_estimate(point[i], samples[:, i], level) for i in range(4)]
    diff = est[2]
    verdict = "above" if diff.low > 0 else "below" if diff.high < 0 else "inside"
    return HumanBand(
        n_items=len(rows),
        n_judgements=int(count.sum()),
        human_loo=est[0],
        llm_vs_others=est[1],
        difference=diff,
        llm_vs_majority=est[3],
        per_reviewer={r: float(np.mean(v)) for r, v in sorted(by_reviewer.items())},
        verdict=verdict,
    )


# --- calibration -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReliabilityBin:
    low: float
    high: float
    count: int
    confidence: float  # mean confidence in the bin (NaN if empty)
    accuracy: float  # share correct in the bin (NaN if empty)


@dataclass(frozen=True)
class Calibration:
    """How well a confidence score matches accuracy, on the n items that have both."""

    n: int
    accuracy: float
    mean_confidence: float
    ece: Estimate
    brier: Estimate
    brier_multiclass: Estimate | None
    auroc: Estimate | None
    bins: tuple[ReliabilityBin, ...]


def _weighted_auroc(w: np.ndarray, positive: np.ndarray, score: np.ndarray) -> np.ndarray:
    """(B,) AUROC of `score` for `positive` under item weights w (B, n): the weighted Mann–Whitney
    statistic, ties counted one half."""
    order = np.argsort(score, kind="stable")
    s, pos, wo = score[order], positive[order], w[:, order]
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
    neg_g = np.add.reduceat(wo * ~pos, starts, axis=1)
    pos_g = np.add.reduceat(wo * pos, starts, axis=1)
    below = np.cumsum(neg_g, axis=1) - neg_g
    num = (pos_g * (below + 0.5 * neg_g)).sum(axis=1)
    den = pos_g.sum(axis=1) * neg_g.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)


def calibration(
    y_true: Sequence[Hashable | None],
    y_pred: Sequence[Hashable | None],
    *,
    confidence: Sequence[float],
    labels: Sequence[str],
    probs: np.ndarray | None = None,
    n_bins: int = 10,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Calibration:
    """Calibration of the top-label confidence, with bootstrap intervals.

    y_true, y_pred: (n,) labels; confidence: (n,) the confidence of y_pred, in [0, 1]; probs: optional (n, K)
    full distributions over `labels` (rows sum to 1) for the multiclass Brier score.

    ECE (expected calibration error), n_bins (10) equal-width bins B_b on [0, 1] (1.0 falls in the last):
        ECE = Σ_b |B_b|/n · |acc(B_b) − conf(B_b)|
    where acc is the share of correct labels in the bin and conf the mean top-label confidence.
    Brier (top-label) = mean (confidence − correct)²; multiclass Brier = mean Σ_k (p_k − 1[y = k])².
    AUROC: how well the confidence ranks correct labels above wrong ones (0.5 = no signal)."""
    t, p = encode(y_true, labels), encode(y_pred, labels)
    conf = np.clip(np.asarray(confidence, dtype=float), 0.0, 1.0)
    n = len(conf)
    if n == 0 or len(t) != n:
        raise ValueError("y_true, y_pred and confidence must have the same, non-zero length")
    correct = ((t == p) & (p < len(labels))).astype(float)
    b = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    onehot = np.eye(n_bins)[b]  # (n, n_bins)
    gap = onehot * (correct - conf)[:, None]
    sq = (conf - correct) ** 2
    loss = np.zeros(n)
    if probs is not None:
        onehot_y = np.eye(len(labels) + 1)[t][:, : len(labels)]
        loss = ((np.asarray(probs, dtype=float) - onehot_y) ** 2).sum(axis=1)
    pos = correct.astype(bool)
    both = 0 < pos.sum() < n

    def resampled(w: np.ndarray) -> np.ndarray:
        auroc = _weighted_auroc(w, pos, conf) if both else np.full(len(w), np.nan)
        return np.stack([np.abs(w @ gap).sum(1) / n, w @ sq / n, w @ loss / n, auroc], axis=1)

    boot = _boot_items(n, resampled, n_boot=n_boot, seed=seed)
    ece = _estimate(np.abs(gap.sum(0)).sum() / n, boot[:, 0], level)
    brier = _estimate(skm.brier_score_loss(pos, conf) if both else sq.mean(), boot[:, 1], level)
    brier_mc = None if probs is None else _estimate(loss.mean(), boot[:, 2], level)
    auroc = _estimate(skm.roc_auc_score(pos, conf), boot[:, 3], level) if both else None
    counts = onehot.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_conf = (onehot * conf[:, None]).sum(0) / counts
        acc = (onehot * correct[:, None]).sum(0) / counts
    bins = tuple(
        ReliabilityBin(i / n_bins, (i + 1) / n_bins, int(counts[i]), float(mean_conf[i]), float(acc[i]))
        for i in range(n_bins)
    )
    return Calibration(
        n=n,
        accuracy=float(correct.mean()),
        mean_confidence=float(conf.mean()),
        ece=ece,
        brier=brier,
        brier_multiclass=brier_mc,
        auroc=auroc,
        bins=bins,
    )


# --- estimates from a random audit -------------------------------------------------------------------------


def wilson_interval(p: float, n: float, *, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion p observed on n (possibly effective, non-integer) trials."""
    if n <= 0:
        return (0.0, 1.0)
    z = _z(level)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def stratified_proportion(
    values: Sequence[float],
    strata: Sequence[str],
    *,
    populations: Mapping[str, int],
    domain: Sequence[bool] | None = None,
    level: float = 0.95,
) -> tuple[Estimate, float]:
    """Share of 1s among the population (or a domain of it) from a stratified random sample.

    values: (n,) 0/1 outcome of each sampled item (e.g. LLM label correct); strata: (n,) each item's stratum;
    populations: stratum → its size N_h; domain: (n,) whether the item belongs to the sub-population of
    interest (default all). Item weights are N_h / n_h (n_h sampled items with a value in stratum h);
    the estimate is the weighted (Hájek) share in the domain; its variance the linearised stratified one,
    Σ_h N_h² (1 − n_h/N_h) s²_h(z) / n_h with z_i = d_i (y_i − R) / N̂_d. The interval is Wilson's at the
    effective sample size n / design effect, so a sample with no errors still gets a real interval.
    Returns (estimate, effective n). Strata absent from the sample are left out (their items unrepresented);
    a stratum with a single sampled item borrows the pooled variance of the sample."""
    y = np.asarray(values, dtype=float)
    d = np.ones_like(y, dtype=bool) if domain is None else np.asarray(domain, dtype=bool)
    s = np.asarray(strata, dtype=object)
    names = sorted(set(s.tolist()))
    weights = np.zeros_like(y)
    for h in names:
        m = s == h
        weights[m] = populations.get(h, m.sum()) / m.sum()
    n_d = float((weights * d).sum())
    if n_d == 0:
        return Estimate(float("nan"), float("nan"), float("nan")), 0.0
    r = float((weights * d * y).sum() / n_d)
    z = d * (y - r) / n_d
    var = 0.0
    for h in names:
        m = s == h
        nh, big_n = int(m.sum()), populations.get(h, int(m.sum()))
        var += big_n**2 * max(0.0, 1 - nh / big_n) * float(_within_var(z, m, bound=0.0)) / nh
    n_in = int(d.sum())
    srs = r * (1 - r) / n_in if n_in else 0.0
    n_eff = n_in * srs / var if var > 0 and srs > 0 else float(n_in)
    lo, hi = wilson_interval(r, n_eff, level=level)
    return Estimate(r, lo, hi), n_eff


@dataclass(frozen=True)
class Prevalence:
    """Share of one label in the whole corpus: as the LLM labelled it (`llm`), from the audit alone
    (`classical`), and prediction-powered (`ppi`): the LLM count corrected by its measured error."""

    label: str
    llm: float
    classical: Estimate
    ppi: Estimate


def _within_var(x: np.ndarray, m: np.ndarray, *, bound: float) -> np.ndarray:
    """Sample variance (ddof 1, over axis 0) of x in stratum mask m. A stratum with one sampled item has
    none: use the pooled variance of the whole sample, or `bound` when that has one item too."""
    if m.sum() >= 2:
        return np.asarray(x[m].var(axis=0, ddof=1))
    if len(x) >= 2:
        return np.asarray(x.var(axis=0, ddof=1))
    return np.full(x.shape[1:], bound)


def _stratified_mean_var(
    v: np.ndarray, s: np.ndarray, populations: Mapping[str, int], *, bound: float
) -> tuple[np.ndarray, np.ndarray]:
    """(K,) stratified mean of (n, K) values and its variance Σ_h (N_h/N)² (1 − f_h) s²_h / n_h."""
    names = sorted(set(s.tolist()))
    total = sum(populations.get(h, int((s == h).sum())) for h in names)
    mean = np.zeros(v.shape[1])
    var = np.zeros(v.shape[1])
    for h in names:
        m = s == h
        nh, big_n = int(m.sum()), populations.get(h, int(m.sum()))
        share = big_n / total
        mean += share * v[m].mean(axis=0)
        var += share**2 * max(0.0, 1 - nh / big_n) * _within_var(v, m, bound=bound) / nh
    return mean, var


def ppi_prevalence(
    pred_all: Sequence[Hashable | None],
    audit_true: Sequence[Hashable | None],
    audit_pred: Sequence[Hashable | None],
    *,
    audit_strata: Sequence[str],
    populations: Mapping[str, int],
    labels: Sequence[str],
    level: float = 0.95,
) -> tuple[Prevalence, ...]:
    """Per-label prevalence in the corpus, corrected for the LLM's error (prediction-powered inference).

    pred_all: (N,) the LLM label of every item; audit_true, audit_pred: (n,) human and LLM labels of the
    audited items; audit_strata: (n,) their strata, sampled at random within each stratum of size N_h.
        θ_k = (1/N) Σ_all 1[pred = k]  +  Σ_h (N_h/N) · mean_{audit ∩ h} (1[human = k] − 1[pred = k])
    The first term is a census (no variance); the interval is the CLT one from the stratified variance of
    the correction term, clipped to [0, 1] (a stratum with one audited item borrows the pooled variance).
    `classical` is the same stratified mean of 1[human = k] alone."""
    k = len(labels)
    pred = encode(pred_all, labels)
    llm = np.bincount(pred, minlength=k + 1)[:k] / len(pred)
    eye = np.eye(k + 1)[:, :k]
    h_ind, p_ind = eye[encode(audit_true, labels)], eye[encode(audit_pred, labels)]
    s = np.asarray(audit_strata, dtype=object)
    z = _z(level)
    rect, rect_var = _stratified_mean_var(h_ind - p_ind, s, populations, bound=1.0)  # δ in [−1, 1]
    cls, cls_var = _stratified_mean_var(h_ind, s, populations, bound=0.25)
    out = []
    for j, lab in enumerate(labels):
        theta, se = llm[j] + rect[j], math.sqrt(rect_var[j])
        c, cse = cls[j], math.sqrt(cls_var[j])
        out.append(
            Prevalence(
                label=lab,
                llm=float(llm[j]),
                classical=Estimate(float(c), max(0.0, c - z * cse), min(1.0, c + z * cse)),
                ppi=Estimate(float(theta), max(0.0, theta - z * se), min(1.0, theta + z * se)),
            )
        )
    return tuple(out)


def audit_size_for_accuracy(
    *, expected_accuracy: float, half_width: float, level: float = 0.95, population: int | None = None
) -> int:
    """Audit items needed for a ±half_width normal-approximation interval on an accuracy near
    `expected_accuracy`: n0 = z² p (1 − p) / h², with the finite-population correction n0 / (1 + (n0 − 1)/N)
    when the population size N is given."""
    return _sample_size(expected_accuracy * (1 - expected_accuracy), half_width, level, population)


def audit_size_for_prevalence(
    *,
    prevalence: float,
    half_width: float,
    level: float = 0.95,
    population: int | None = None,
    disagreement_rate: float | None = None,
) -> int:
    """Audit items needed for a ±half_width interval on a label's prevalence. Classical: variance
    p (1 − p). Prediction-powered (give `disagreement_rate`, the share of items where 1[human = k] and
    1[LLM = k] differ): the variance of the correction is at most that rate, usually far below p (1 − p)."""
    var = prevalence * (1 - prevalence) if disagreement_rate is None else disagreement_rate
    return _sample_size(var, half_width, level, population)


def _sample_size(var: float, half_width: float, level: float, population: int | None) -> int:
    if not 0 < half_width < 1:
        raise ValueError("half_width must be between 0 and 1")
    n0 = _z(level) ** 2 * var / half_width**2
    if population:
        n0 = n0 / (1 + (n0 - 1) / population)
    return max(1, math.ceil(n0 - 1e-9))


# --- cost and quality ---------------------------------------------------------------------------------------


def budget_curve(
    correct: Sequence[bool],
    confidence: Sequence[float | None],
    *,
    budgets: Sequence[int],
    level: float = 0.95,
) -> dict[str, list[float]]:
    """Final accuracy when `b` items are reviewed (their LLM label replaced by the human one, taken as
    correct), for each b in `budgets`, on n items whose correctness is known.

    correct: (n,) whether the LLM label is right; confidence: (n,) its confidence (None/NaN = unknown,
    reviewed first). "lowest_first" reviews in increasing confidence, ties in random order (the curve is
    the expectation: linear within a tie); "random" is the expectation of random routing, with the
    hypergeometric `level` band ("random_low", "random_high")."""
    ok = np.asarray(correct, dtype=bool)
    n, errors = len(ok), int((~ok).sum())
    conf = np.array([-np.inf if c is None else c for c in confidence], dtype=float)
    conf[np.isnan(conf)] = -np.inf
    order = np.argsort(conf, kind="stable")
    s, wrong = conf[order], (~ok[order]).astype(float)
    ends = np.r_[np.flatnonzero(s[1:] != s[:-1]) + 1, n]
    xs = np.r_[0, ends]
    ys = np.r_[0.0, np.cumsum(wrong)[ends - 1]]
    b = np.clip(np.asarray(budgets, dtype=float), 0, n)
    fixed = np.interp(b, xs, ys)
    base = ok.sum()
    q = (1 - level) / 2
    dist = stats.hypergeom(n, errors, b.astype(int))
    return {
        "budget": b.astype(int).tolist(),
        "lowest_first": ((base + fixed) / n).tolist(),
        "random": ((base + b * errors / n) / n).tolist(),
        "random_low": ((base + dist.ppf(q)) / n).tolist(),
        "random_high": ((base + dist.ppf(1 - q)) / n).tolist(),
    }


def cost_scenarios(
    *,
    n_items: int,
    llm_cost: float,
    price_per_label: float,
    review_budget: int,
    llm_accuracy: float,
    reviewed_accuracy: float,
    human_accuracy: float = 1.0,
) -> list[dict[str, Any]]:
    """Cost and accuracy of three ways to label n items: LLM only; LLM plus `review_budget` human labels;
    all human. Cost per label = cost / n; cost per accuracy point = cost / (100 · accuracy)."""
    rows = [
        ("LLM only", llm_cost, 0, llm_accuracy),
        ("LLM + review", llm_cost + price_per_label * review_budget, review_budget, reviewed_accuracy),
        ("all human", price_per_label * n_items, n_items, human_accuracy),
    ]
    return [
        {
            "scenario": name,
            "human_labels": labels_n,
            "cost": cost,
            "accuracy": acc,
            "cost_per_label": cost / n_items if n_items else float("nan"),
            "cost_per_accuracy_point": cost / (100 * acc) if acc and not math.isnan(acc) else float("nan"),
        }
        for name, cost, labels_n, acc in rows
    ]
