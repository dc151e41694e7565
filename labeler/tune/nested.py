"""Nested cross-validation, pure: an unbiased score of the tuner's *procedure*, on answers already collected.

The inner scores (labeler.tune.protocol) chose the winner, so its inner score is the maximum of noisy
scores and flatters it. Here the whole selection — candidate (variant × strategy), correction, the
one-SE rule — is repeated inside each outer fold on the other folds' items alone; the correction it
chose is fitted on those items and predicts the outer fold's items, which no choice saw. Macro-F1 of
those predictions, with a bootstrap percentile interval, estimates what the tuned labels score on new
items. No model is asked: every candidate's answers on every tuning item are already known.

Shapes as in labeler.tune.protocol: `runs` maps a candidate name to (probs (n, k), content_free (m, k)).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from labeler.confidence.bias import apply_offsets
from labeler.confidence.correct import fit_offsets_for
from labeler.tune.protocol import bootstrap_indices, choose, macro_f1_stats, score_candidate, stratified_folds


@dataclass(frozen=True)
class Nested:
    macro_f1: float
    low: float
    high: float
    picks: tuple[tuple[str, str], ...]  # per outer fold: the (candidate, correction) its selection chose
    pred: np.ndarray  # (n,) each item's label, by a selection and correction that never saw it


def nested_score(
    runs: Mapping[str, tuple[np.ndarray, np.ndarray]],
    y: np.ndarray,
    *,
    kinds: Sequence[str],
    outer: int = 5,
    inner: int = 5,
    n_boot: int = 1000,
    seed: int = 0,
    one_se: bool = True,
) -> Nested:
    """The selection repeated inside `outer` stratified folds (each with `inner` folds of its own)."""
    y = np.asarray(y, dtype=int)
    k = next(iter(runs.values()))[0].shape[1]
    n = len(y)
    outer = max(2, min(outer, int(np.bincount(y, minlength=k).max())))
    fold_of = stratified_folds(y, k, n_splits=outer, seed=seed + 1)
    pred = np.empty(n, dtype=int)
    picks = []
    for f in range(outer):
        train, test = np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)
        if not len(test):
            continue
        yt = y[train]
        n_in = max(2, min(inner, int(np.bincount(yt, minlength=k).max())))
        in_folds = stratified_folds(yt, k, n_splits=n_in, seed=seed + 2 + f)
        in_boot = bootstrap_indices(len(train), n_boot=max(50, n_boot // 5), seed=seed + f)
        scores = [
            s
            for name, (probs, cf) in runs.items()
            for s in score_candidate(
                name, probs[train], yt, kinds=kinds, fold_of=in_folds, boot=in_boot, content_free=cf
            )
        ]
        best = choose(scores, one_se=one_se)
        probs, cf = runs[best.candidate]
        b = fit_offsets_for(best.correction, probs[train], yt, content_free=cf)
        pred[test] = np.argmax(apply_offsets(probs[test], b), axis=1)
        picks.append((best.candidate, best.correction))
    value, low, high, _ = macro_f1_stats(y, pred, k, bootstrap_indices(n, n_boot=n_boot, seed=seed))
    return Nested(value, low, high, tuple(picks), pred)
