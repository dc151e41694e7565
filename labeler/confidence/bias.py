"""Bias correction of a model's label distributions, fitted on human labels; pure functions.

A small or badly prompted model often prefers one label whatever the text says (the prior it brings) —
labeler's evaluation shows it as over-prediction. Two corrections, both applied to every item's
distribution over the labels, so they can change the label:

    contextual   divide out the model's prior measured on content-free inputs ("N/A", "", "[MASK]"):
                 p'(y|x) ∝ p(y|x) / p(y|cf)        (Zhao et al. 2021, "Calibrate before use")
    offsets      add a per-label offset b to the log-probabilities: p'(y|x) ∝ p(y|x)·exp(b_y), i.e. a prior
                 shift, which is also a per-class threshold; b is fitted on human-labelled items for
                 macro-F1 (coordinate search over a grid) or for likelihood (convex, scipy), both held to a
                 prior-matching target: on the fitting items each label is predicted about as often as the
                 humans gave it (within `prior_tolerance` Poisson standard deviations, √n_c), so the
                 correction cannot flip the bias it removes (macro-F1 alone is flat and noisy near its
                 optimum, and on 200 labels its search often over-corrects: the once over-predicted label
                 ends up under-predicted)

Shapes: `probs` (n, k) rows summing to 1 over the label set, `y` (n,) label indices, `offsets` (k,).
`cross_validated` fits inside K folds and scores every item only by a correction that never saw it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

FLOOR = 1e-9
OBJECTIVES = ("macro_f1", "log_loss")


def _log(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, dtype=float), FLOOR, None))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def contextual_offsets(content_free: np.ndarray) -> np.ndarray:
    """Offsets (k,) that divide out the mean distribution (k,) of the model on content-free inputs
    (`content_free` (m, k), one row per content-free input)."""
    prior = np.asarray(content_free, dtype=float).reshape(-1, np.shape(content_free)[-1]).mean(axis=0)
    prior = prior / prior.sum()
    b: np.ndarray = -_log(prior[None, :])[0]
    return b - b.mean()


def apply_offsets(probs: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The corrected distributions (n, k): softmax(log p + offsets)."""
    return _softmax(_log(probs) + np.asarray(offsets, dtype=float)[None, :])


def macro_f1(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    """Macro-F1 over the k labels (a label absent from both y and pred counts as F1 = 0, as sklearn's
    zero_division=0 with labels=range(k) does)."""
    f1 = []
    for c in range(k):
        tp = np.sum((pred == c) & (y == c))
        fp = np.sum((pred == c) & (y != c))
        fn = np.sum((pred != c) & (y == c))
        f1.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(f1))


def fit_offsets(
    probs: np.ndarray,
    y: np.ndarray,
    *,
    objective: str = "macro_f1",
    start: np.ndarray | None = None,
    grid: Sequence[float] = tuple(np.linspace(-6.0, 6.0, 49)),
    sweeps: int = 4,
    l2: float = 0.0,
    prior_tolerance: float | None = 1.0,
) -> np.ndarray:
    """Offsets (k,) fitted on labelled items. "macro_f1": coordinate search — each label's offset in turn
    takes the grid value that maximises macro-F1 (ties: the value nearest the current one), `sweeps`
    times; "log_loss": minimise the mean negative log-likelihood of softmax(log p + b) (+ l2·|b|²).

    `prior_tolerance` (None: off) holds both to the prior-matching target: the search ranks offsets first
    by how far the predicted counts of the labels fall outside human count ± max(1, tolerance·√count)
    (`prior_gap`), then by macro-F1; the likelihood fit (whose argmax leans: it matches the mean
    probabilities, not the counts) is moved by the same lexicographic search, on a fine grid around it,
    to the human counts ± 1 (the band's edge left a lean of 1.2 on held-out items)."""
    logp = _log(probs)
    n, k = logp.shape
    y = np.asarray(y, dtype=int)
    b = np.zeros(k) if start is None else np.asarray(start, dtype=float).copy()
    counts = np.bincount(y, minlength=k)
    tol = None if prior_tolerance is None else np.maximum(1.0, prior_tolerance * np.sqrt(counts))
    if objective == "log_loss":
        from scipy.optimize import minimize

        def nll(v: np.ndarray) -> tuple[float, np.ndarray]:
            p = _softmax(logp + v[None, :])
            loss = -np.log(np.clip(p[np.arange(n), y], FLOOR, None)).mean() + l2 * float(v @ v)
            grad = p.mean(axis=0) - np.bincount(y, minlength=k) / n + 2 * l2 * v
            return float(loss), grad

        b = np.asarray(minimize(nll, b, jac=True, method="L-BFGS-B").x, dtype=float)
        exact = np.ones(k)

        def gap_ll(v: np.ndarray) -> float:
            return prior_gap(np.argmax(logp + v[None, :], axis=1), counts, exact)

        if tol is not None and gap_ll(b) > 0:  # to the human counts ± 1 as near as the grid gets (the
            # band's edge would leave the likelihood's own lean, measured at 1.2 on held-out items)
            steps = np.linspace(-3.0, 3.0, 61)
            b = _search(
                b,
                lambda v: (-gap_ll(v), -nll(v)[0]),
                lambda c, cur: cur + steps,
                sweeps,
            )
        return b - b.mean()
    if objective != "macro_f1":
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    values = np.asarray(grid, dtype=float)

    def rank(v: np.ndarray) -> tuple[float, float]:
        pred = np.argmax(logp + v[None, :], axis=1)
        return (0.0 if tol is None else -prior_gap(pred, counts, tol)), macro_f1(y, pred, k)

    b = _search(b, rank, lambda c, cur: values, sweeps)
    return b - b.mean()


def prior_gap(pred: np.ndarray, counts: np.ndarray, tol: np.ndarray) -> float:
    """How far the predicted counts of the labels (from `pred` (n,)) fall outside `counts` ± `tol`, (k,)
    each, summed over the labels: 0 when every label is predicted about as often as the humans gave it."""
    have = np.bincount(pred, minlength=len(counts))
    return float(np.sum(np.maximum(0.0, np.abs(have - counts) - tol)))


def _search(
    b: np.ndarray,
    rank: Callable[[np.ndarray], tuple[float, float]],
    values_for: Callable[[int, float], np.ndarray],
    sweeps: int,
) -> np.ndarray:
    """Coordinate search: each label's offset in turn takes the value of `values_for(label, current)` with
    the highest `rank` (compared as tuples; ties: the value nearest the current one), `sweeps` times."""
    b = b.copy()
    for _ in range(sweeps):
        changed = False
        for c in range(len(b)):
            values = values_for(c, float(b[c]))
            ranks = []
            for v in values:
                trial = b.copy()
                trial[c] = v
                ranks.append(rank(trial))
            top = max(ranks)
            near = [i for i, r in enumerate(ranks) if r[0] == top[0] and np.isclose(r[1], top[1])]
            pick = float(values[min(near, key=lambda i: abs(values[i] - b[c]))])
            changed |= pick != b[c]
            b[c] = pick
        if not changed:
            break
    return b


@dataclass(frozen=True)
class CrossValidated:
    offsets: np.ndarray  # (k,) fitted on all items (what is applied to the corpus)
    oof_pred: np.ndarray  # (n,) each item's corrected label by offsets fitted without its fold
    fold_of: np.ndarray  # (n,) the fold each item was scored in
    fitted_on: tuple[frozenset[int], ...]  # per fold: the item indices its offsets were fitted on


def cross_validated(
    probs: np.ndarray,
    y: np.ndarray,
    *,
    objective: str = "macro_f1",
    base: np.ndarray | None = None,
    n_splits: int = 5,
    seed: int = 0,
) -> CrossValidated:
    """Fit offsets in `n_splits` stratified folds (starting from `base`, e.g. contextual offsets) and
    predict each item with the offsets fitted on the other folds; then fit once on everything."""
    y = np.asarray(y, dtype=int)
    n, k = np.shape(probs)
    rng = np.random.default_rng(seed)
    fold_of = np.empty(n, dtype=int)
    for c in range(k):  # stratified: each label's items dealt round-robin into folds, in a random order
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        fold_of[idx] = (np.arange(len(idx)) + rng.integers(n_splits)) % n_splits
    logp = _log(probs)
    oof = np.empty(n, dtype=int)
    fitted = []
    for f in range(n_splits):
        train = np.flatnonzero(fold_of != f)
        test = np.flatnonzero(fold_of == f)
        fitted.append(frozenset(train.tolist()))
        if not len(test):
            continue
        b = fit_offsets(probs[train], y[train], objective=objective, start=base)
        oof[test] = np.argmax(logp[test] + b[None, :], axis=1)
    full = fit_offsets(probs, y, objective=objective, start=base)
    return CrossValidated(full, oof, fold_of, tuple(fitted))
