"""Query strategies: which unlabeled pool items to ask a human about next.

The scores come from scikit-activeml's public functions (`uncertainty_scores`, `vote_entropy`,
`average_kl_divergence`, `k_greedy_center`); what is ours is the glue: candidates, tie-breaking and the
committee. Its query classes (`UncertaintySampling`, `QueryByCommittee`, `CoreSet`) validate X as a dense
array, and a dense copy of a TF-IDF matrix is gigabytes at 2,000 items, so the student here is fitted once
per round on the sparse matrix and its probabilities are handed to the library's scoring functions.

    random             a uniform sample of the candidates
    least_confidence   1 − max_k p(k | x)                                     (skactiveml, "least_confident")
    margin             1 − (p_top1 − p_top2)                                  (skactiveml, "margin_sampling")
    entropy            −Σ_k p(k | x) log p(k | x)                            (skactiveml, "entropy")
    qbc                vote entropy of a bagged committee (students fitted on bootstrap resamples of the
                       labeled set), ties broken by the committee's average KL divergence  (skactiveml)
    coreset            k-center greedy on the LSA features: the item farthest from every labeled item,
                       one at a time                                           (skactiveml, k_greedy_center)
    margin_coreset     uncertainty + diversity: the `hybrid_factor`·batch lowest-margin candidates, then
                       k-center greedy among them, so one batch does not spend itself on near-duplicates

Every strategy sees only `Query.candidates`, indices into the pool. The pool holds no test item (see
labeler.study.data), so no strategy can select one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from labeler.study.classifiers import Factory, bagged_committee

RANDOM = "random"
STRATEGIES = ("random", "least_confidence", "margin", "entropy", "qbc", "coreset", "margin_coreset")
NEEDS_STUDENT = frozenset({"least_confidence", "margin", "entropy", "margin_coreset"})
_SKAL = {"least_confidence": "least_confident", "margin": "margin_sampling", "entropy": "entropy"}


@dataclass(frozen=True)
class Query:
    """One round's question. X: (n, d) sparse pool features; Z: (n, k) dense LSA features; y: (n,) labels
    known so far (-1 = unlabeled); candidates: (c,) pool indices that may be asked; proba: (n, K) the current
    student's probabilities on the pool, or None before the first fit."""

    X: Any
    Z: np.ndarray
    y: np.ndarray
    candidates: np.ndarray
    proba: np.ndarray | None
    factory: Factory
    k: int
    rng: np.random.Generator
    committee: int = 5
    hybrid_factor: int = 5
    labels: tuple[str, ...] = ()  # label names, for the reasons


@dataclass(frozen=True)
class Picked:
    """The items chosen, in the order chosen: pool indices, the strategy's score (higher = asked sooner)
    and a short reason for each."""

    indices: np.ndarray
    scores: np.ndarray
    reasons: tuple[str, ...]


def _top(candidates: np.ndarray, scores: np.ndarray, batch: int, rng: np.random.Generator) -> np.ndarray:
    """Positions (into candidates) of the `batch` highest scores; ties in random order."""
    perm = rng.permutation(len(candidates))
    order = perm[np.argsort(-scores[perm], kind="stable")]
    return order[:batch]


def _random(q: Query, batch: int) -> Picked:
    pos = q.rng.choice(len(q.candidates), size=min(batch, len(q.candidates)), replace=False)
    return Picked(q.candidates[pos], np.full(len(pos), np.nan), ("random",) * len(pos))


def _describe(p: np.ndarray, labels: tuple[str, ...]) -> str:
    a, b = np.argsort(-p, kind="stable")[:2]
    na, nb = (labels[a], labels[b]) if labels else (str(a), str(b))
    return f"{na} {p[a]:.2f} vs {nb} {p[b]:.2f}"


def _uncertainty(method: str) -> Callable[[Query, int], Picked]:
    def pick(q: Query, batch: int) -> Picked:
        from skactiveml.pool import uncertainty_scores

        if q.proba is None:
            return _random(q, batch)
        p = q.proba[q.candidates]
        u = np.asarray(uncertainty_scores(p, method=_SKAL[method]), dtype=float)
        pos = _top(q.candidates, u, batch, q.rng)
        reasons = tuple(f"{method} {u[j]:.3f} ({_describe(p[j], q.labels)})" for j in pos)
        return Picked(q.candidates[pos], u[pos], reasons)

    return pick


def committee_disagreement(probas: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(vote entropy, average KL divergence) per item from (members, n, K) committee probabilities."""
    from skactiveml.pool import average_kl_divergence, vote_entropy

    votes = probas.argmax(axis=2).T  # (n, members)
    ve = np.asarray(vote_entropy(votes, classes=np.arange(k)), dtype=float)
    kl = np.asarray(average_kl_divergence(probas.copy()), dtype=float)
    return ve, kl


def _qbc(q: Query, batch: int) -> Picked:
    lab = np.flatnonzero(q.y >= 0)
    if len(lab) == 0:
        return _random(q, batch)
    members = bagged_committee(q.factory, q.X[lab], q.y[lab], q.k, members=q.committee, rng=q.rng)
    Xc = q.X[q.candidates]
    probas = np.stack([m.proba(Xc) for m in members])
    ve, kl = committee_disagreement(probas, q.k)
    score = ve + 1e-6 * kl / (1.0 + kl)  # vote entropy first; KL only orders its ties
    pos = _top(q.candidates, score, batch, q.rng)
    return Picked(q.candidates[pos], ve[pos], tuple(f"vote entropy {ve[j]:.3f}, KL {kl[j]:.3f}" for j in pos))


def _k_center(q: Query, mapping: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """k-center greedy over `mapping` (pool indices), labeled items as the first centres: (indices, distance)."""
    from skactiveml.pool import k_greedy_center

    batch = min(batch, len(mapping))
    if (q.y >= 0).sum() == 0:  # no centre yet: start from a random candidate
        first = int(q.rng.choice(mapping))
        rest = mapping[mapping != first]
        if batch == 1 or len(rest) == 0:
            return np.array([first]), np.array([np.nan])
        y = q.y.copy()
        y[first] = 0  # a centre, not a label: only the distances use it
        idx, dist = _k_center(replace(q, y=y), rest, batch - 1)
        return np.r_[first, idx], np.r_[np.nan, dist]
    seed = int(q.rng.integers(0, 2**31 - 1))
    idx, util = k_greedy_center(q.Z, q.y, batch_size=batch, random_state=seed, missing_label=-1, mapping=mapping)
    idx = np.asarray(idx, dtype=int)
    dist = np.array([util[i, j] for i, j in enumerate(idx)], dtype=float)
    return idx, dist


def _coreset(q: Query, batch: int) -> Picked:
    idx, dist = _k_center(q, q.candidates, batch)
    return Picked(idx, dist, tuple(f"distance to the nearest labeled item {d:.3f}" for d in dist))


def _margin_coreset(q: Query, batch: int) -> Picked:
    from skactiveml.pool import uncertainty_scores

    if q.proba is None:
        return _coreset(q, batch)
    u = np.asarray(uncertainty_scores(q.proba[q.candidates], method="margin_sampling"), dtype=float)
    short = q.candidates[_top(q.candidates, u, q.hybrid_factor * batch, q.rng)]
    idx, dist = _k_center(q, short, batch)
    margin = dict(zip(q.candidates.tolist(), u.tolist(), strict=True))
    reasons = tuple(
        f"margin {margin[int(i)]:.3f} (top {len(short)}), distance {d:.3f}" for i, d in zip(idx, dist, strict=True)
    )
    return Picked(idx, np.array([margin[int(i)] for i in idx]), reasons)


PICKERS: dict[str, Callable[[Query, int], Picked]] = {
    "random": _random,
    "least_confidence": _uncertainty("least_confidence"),
    "margin": _uncertainty("margin"),
    "entropy": _uncertainty("entropy"),
    "qbc": _qbc,
    "coreset": _coreset,
    "margin_coreset": _margin_coreset,
}


def pick(strategy: str, q: Query, batch: int) -> Picked:
    """The next `batch` items by `strategy` (one of STRATEGIES), never outside `q.candidates`."""
    if batch <= 0 or len(q.candidates) == 0:
        return Picked(np.zeros(0, dtype=int), np.zeros(0), ())
    out = PICKERS[strategy](q, min(batch, len(q.candidates)))
    assert np.isin(out.indices, q.candidates).all(), f"{strategy} picked outside its candidates"
    assert len(set(out.indices.tolist())) == len(out.indices), f"{strategy} picked an item twice"
    return out
