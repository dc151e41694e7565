"""The active-learning loop, simulated: rounds of (fit the student, measure it, ask for the next batch), with
the human labels of the pool as the oracle, and the rules that would have stopped it.

A schedule is the list of labeled-set sizes at which the student is fitted: the random seed set first, then
one round per batch, with any marked size (the equal-cost budget) inserted, so every strategy is measured
at exactly that number of labels. Each strategy of one repeat starts from the same seed set.

What a round records, per strategy and repeat: the student's label and top probability for each test
item (to score it later, with the bootstrap, against the test split), its labels on the unlabeled stopping
set, and its cross-validated macro-F1 on the labels it was trained on. The stopping rules read only the
last two, the things a team has in practice; the test split is never looked at while the loop runs.

Stopping rules (each gives the first round at which it fires, or None):
    stable      Cohen's kappa between consecutive rounds' labels on the stopping set, averaged over the last
                three round pairs, reaches `kappa` (0.99; Bloodgood & Vijay-Shanker 2009)
    plateau     the cross-validated macro-F1 gained over the last three rounds is below `min_gain` (0.01)
    budget      the labeled set reaches the equal-cost budget (or the last round)
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import f1_score

from labeler.study.classifiers import Factory, Features, fit_proba
from labeler.study.strategies import NEEDS_STUDENT, Query, pick


@dataclass(frozen=True)
class Schedule:
    sizes: tuple[int, ...]  # labeled-set sizes, increasing; sizes[0] is the seed set

    @property
    def seed_size(self) -> int:
        return self.sizes[0]


def make_schedule(*, seed_size: int, batch: int, max_labels: int, marks: Sequence[int] = ()) -> Schedule:
    """Seed set, then one round per `batch` labels up to `max_labels`, with the `marks` inside that range."""
    if seed_size < 1 or batch < 1:
        raise ValueError("seed_size and batch must be at least 1")
    top = max(seed_size, max_labels)
    sizes = set(range(seed_size, top + 1, batch)) | {top}
    sizes |= {m for m in marks if seed_size <= m <= top}
    return Schedule(tuple(sorted(sizes)))


@dataclass(frozen=True)
class Trajectory:
    """One strategy, one repeat. Arrays have one row per round (R rounds): m test items, s stopping items."""

    strategy: str
    repeat: int
    sizes: np.ndarray  # (R,) labels used by each round's student
    order: np.ndarray  # (sizes[-1],) pool indices in the order they were labeled
    test_pred: np.ndarray  # (R, m) the student's label for each test item
    test_conf: np.ndarray  # (R, m) its probability for that label
    stop_pred: np.ndarray  # (R, s) its labels on the stopping set
    cv_f1: np.ndarray  # (R,) cross-validated macro-F1 on the labeled set (NaN below 2 items per fold)
    seconds: float


def cv_macro_f1(factory: Factory, X: object, y: np.ndarray, k: int, *, folds: int, seed: int) -> float:
    """Macro-F1 of out-of-fold predictions on the labeled set (the labels present), NaN when too small."""
    from sklearn.model_selection import KFold

    n = len(y)
    f = min(folds, n // 2)
    if f < 2 or len(np.unique(y)) < 2:
        return float("nan")
    pred = np.empty(n, dtype=np.int64)
    for tr, te in KFold(n_splits=f, shuffle=True, random_state=seed).split(np.arange(n)):
        pred[te] = fit_proba(factory, X[tr], y[tr], k).proba(X[te]).argmax(1)  # type: ignore[index]
    return float(f1_score(y, pred, labels=np.unique(y), average="macro", zero_division=0))


def simulate(
    strategy: str,
    *,
    features: Features,
    oracle: np.ndarray,
    queryable: np.ndarray,
    seed_set: np.ndarray,
    stop_idx: np.ndarray,
    schedule: Schedule,
    factory: Factory,
    k: int,
    seed: int,
    repeat: int = 0,
    committee: int = 5,
    hybrid_factor: int = 5,
    cv_folds: int = 5,
    labels: tuple[str, ...] = (),
) -> Trajectory:
    """Run one strategy through the schedule. oracle: (n,) the pool's human labels (-1 = none); queryable:
    (n,) which pool items can be asked; seed_set: pool indices labeled before the first round."""
    t0 = time.perf_counter()
    rng = np.random.default_rng([seed, repeat, zlib.crc32(strategy.encode())])
    X, Xt = features.pool, features.test
    order = [int(i) for i in seed_set]
    rows_pred, rows_conf, rows_stop, cv = [], [], [], []
    proba: np.ndarray | None = None
    y = np.full(len(oracle), -1, dtype=np.int64)
    for r, size in enumerate(schedule.sizes):
        need = size - len(order)
        if r > 0 and need > 0:
            labeled = np.zeros(len(oracle), dtype=bool)
            labeled[order] = True
            candidates = np.flatnonzero(queryable & ~labeled)
            q = Query(
                X=X,
                Z=features.pool_dense,
                y=y,
                candidates=candidates,
                proba=proba,
                factory=factory,
                k=k,
                rng=rng,
                committee=committee,
                hybrid_factor=hybrid_factor,
                labels=labels,
            )
            order.extend(int(i) for i in pick(strategy, q, need).indices)
        idx = np.asarray(order, dtype=np.int64)
        y = np.full(len(oracle), -1, dtype=np.int64)
        y[idx] = oracle[idx]
        student = fit_proba(factory, X[idx], oracle[idx], k)
        if strategy in NEEDS_STUDENT:
            proba = student.proba(X)
            stop_p = proba[stop_idx]
        else:
            stop_p = student.proba(X[stop_idx])
        pt = student.proba(Xt)
        rows_pred.append(pt.argmax(1))
        rows_conf.append(pt.max(1))
        rows_stop.append(stop_p.argmax(1))
        cv.append(cv_macro_f1(factory, X[idx], oracle[idx], k, folds=cv_folds, seed=seed + r))
    return Trajectory(
        strategy=strategy,
        repeat=repeat,
        sizes=np.array([min(s, len(order)) for s in schedule.sizes]),
        order=np.asarray(order, dtype=np.int64),
        test_pred=np.array(rows_pred, dtype=np.int64),
        test_conf=np.array(rows_conf, dtype=float),
        stop_pred=np.array(rows_stop, dtype=np.int64),
        cv_f1=np.array(cv, dtype=float),
        seconds=time.perf_counter() - t0,
    )


# --- stopping rules ------------------------------------------------------------------------------------------


def kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa of two labelings of the same items; 1.0 when they are identical (even if constant)."""
    a, b = np.asarray(a), np.asarray(b)
    if len(a) == 0 or (a == b).all():
        return 1.0
    po = float((a == b).mean())
    cats = np.union1d(a, b)
    pe = float(sum((a == c).mean() * (b == c).mean() for c in cats))
    return (po - pe) / (1 - pe) if pe < 1 else 0.0


def stop_stable(stop_pred: np.ndarray, *, threshold: float = 0.99, window: int = 3) -> int | None:
    """First round whose last `window` round-to-round kappas on the stopping set average >= threshold."""
    ks = [kappa(stop_pred[r - 1], stop_pred[r]) for r in range(1, len(stop_pred))]
    for r in range(window, len(ks) + 1):
        if np.mean(ks[r - window : r]) >= threshold:
            return r
    return None


def stop_plateau(cv_f1: np.ndarray, *, min_gain: float = 0.01, window: int = 3) -> int | None:
    """First round r >= window with cv_f1[r] − cv_f1[r − window] < min_gain (both defined)."""
    for r in range(window, len(cv_f1)):
        a, b = cv_f1[r - window], cv_f1[r]
        if np.isfinite(a) and np.isfinite(b) and b - a < min_gain:
            return r
    return None


def stop_budget(sizes: np.ndarray, budget: int) -> int:
    """First round with at least `budget` labels (the last round when the budget is never reached)."""
    hit = np.flatnonzero(np.asarray(sizes) >= budget)
    return int(hit[0]) if len(hit) else len(sizes) - 1
