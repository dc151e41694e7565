"""The tuning protocol, pure: every candidate's correction is fitted inside stratified folds and every item
is scored only by a correction fitted without it; macro-F1 with a bootstrap interval on those held-out
predictions; the best candidate is chosen on them.

Shapes: `probs` (n, k) a candidate's distributions on the n human-labelled items, `y` (n,) label indices,
`content_free` (m, k) its distributions on content-free inputs. The folds are the same for every
candidate (seeded), and so are the bootstrap resamples, so candidates are compared on the same items.

Choosing the best of many candidates on these scores flatters the winner a little (its held-out score
is the maximum of noisy scores): the honest before/after numbers come from items no choice saw (the
random audit, or a held-out split), never from these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from labeler.confidence.bias import apply_offsets, macro_f1
from labeler.confidence.correct import fit_offsets_for

T = TypeVar("T")


def stratified_folds(y: np.ndarray, k: int, *, n_splits: int, seed: int) -> np.ndarray:
    """(n,) fold index of each item: each label's items dealt round-robin into the folds in a seeded order."""
    y = np.asarray(y, dtype=int)
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(y), dtype=int)
    start = 0
    for c in range(k):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        fold_of[idx] = (np.arange(len(idx)) + start) % n_splits
        start += len(idx)
    return fold_of


@dataclass(frozen=True)
class Score:
    """One candidate with one correction kind, scored on held-out folds."""

    candidate: str
    correction: str
    macro_f1: float
    low: float
    high: float
    oof_probs: np.ndarray  # (n, k) each item's corrected distribution, by offsets fitted without its fold
    fitted_on: tuple[frozenset[int], ...]  # per fold: the item indices its correction was fitted on
    fold_of: np.ndarray  # (n,)
    se: float = 0.0  # the bootstrap standard error of macro_f1

    @property
    def oof_pred(self) -> np.ndarray:
        return np.asarray(np.argmax(self.oof_probs, axis=1), dtype=int)


def bootstrap_indices(n: int, *, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) item indices drawn with replacement (seeded): the same resamples for every candidate."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def macro_f1_interval(
    y: np.ndarray, pred: np.ndarray, k: int, boot: np.ndarray, level: float = 0.95
) -> tuple[float, float, float]:
    """Macro-F1 of `pred` against `y` and its bootstrap percentile interval over the resamples `boot`."""
    value, low, high, _ = macro_f1_stats(y, pred, k, boot, level)
    return value, low, high


def macro_f1_stats(
    y: np.ndarray, pred: np.ndarray, k: int, boot: np.ndarray, level: float = 0.95
) -> tuple[float, float, float, float]:
    """Macro-F1, its bootstrap percentile interval and its bootstrap standard error."""
    values = np.array([macro_f1(y[b], pred[b], k) for b in boot])
    a = (1 - level) / 2
    se = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return macro_f1(y, pred, k), float(np.quantile(values, a)), float(np.quantile(values, 1 - a)), se


def score_candidate(
    name: str,
    probs: np.ndarray,
    y: np.ndarray,
    *,
    kinds: Sequence[str],
    fold_of: np.ndarray,
    boot: np.ndarray,
    content_free: np.ndarray | None = None,
) -> list[Score]:
    """One Score per correction kind (kinds needing content-free inputs are skipped without them)."""
    y = np.asarray(y, dtype=int)
    n, k = np.shape(probs)
    out = []
    folds = sorted(set(fold_of.tolist()))
    for kind in kinds:
        if kind.startswith("contextual") and (content_free is None or not len(content_free)):
            continue
        oof = np.empty((n, k))
        fitted = []
        for f in folds:
            train, test = np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)
            fitted.append(frozenset(train.tolist()))
            b = fit_offsets_for(kind, probs[train], y[train], content_free=content_free)
            oof[test] = apply_offsets(probs[test], b)
        value, low, high, se = macro_f1_stats(y, np.argmax(oof, axis=1), k, boot)
        out.append(Score(name, kind, value, low, high, oof, tuple(fitted), fold_of, se))
    return out


def one_se_choice(scores: Sequence[T], value: Callable[[T], float], se: Callable[[T], float], *,
                  one_se: bool = True) -> T:
    """The one-standard-error rule: the earliest score (simpler candidates and corrections come first)
    whose held-out `value` is within one bootstrap `se` of the highest; `one_se=False`: the highest (ties
    within 1e-9 go to the earlier score). Single labels score macro-F1, multi-label and spans micro-F1."""
    best = scores[0]
    for s in scores[1:]:
        if value(s) > value(best) + 1e-9:
            best = s
    if not one_se:
        return best
    return next(s for s in scores if value(s) >= value(best) - se(best) - 1e-9)


def choose(scores: Sequence[Score], *, one_se: bool = True) -> Score:
    """`one_se_choice` by held-out macro-F1."""
    return one_se_choice(scores, lambda s: s.macro_f1, lambda s: s.se, one_se=one_se)


def never_scored_on_fitted(score: Score) -> bool:
    """The protocol's promise, checked by construction: no item was scored by a correction fitted on it."""
    folds = sorted(set(score.fold_of.tolist()))
    return all(
        not (set(np.flatnonzero(score.fold_of == f).tolist()) & fitted)
        for f, fitted in zip(folds, score.fitted_on, strict=True)
    )
