"""The downstream classifier ("student") and its features: TF-IDF + logistic regression by default, pluggable.

Features are fitted on the pool's texts only (the test split never shapes the vocabulary): a TF-IDF matrix
(words and word pairs in at least 2 pool texts, sublinear tf) for the student,
and a dense LSA embedding (truncated SVD of the TF-IDF matrix, L2-normalised) for the distance-based
strategies (core-set), where a 20,000-column sparse matrix would be slow and dense copies of
it too large.

A student is any scikit-learn classifier with `fit(X, y, sample_weight=None)` and `predict_proba`, made by
a factory: "logreg" (LogisticRegression, C=10 chosen in advance, not on the test split; newton-cg, which
is 20-60x faster than lbfgs on these sparse problems here), "logreg_balanced" (the same with
class_weight="balanced": each class weighs in inverse proportion to its share of the training labels, so
a rare class is not drowned out), "nb" (ComplementNB), or "module:function" naming a function that returns
a fresh estimator. `fit_proba` wraps the cases a small labeled set brings: labels missing from the training
set get probability 0, a training set with one label predicts it with probability 1.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy import sparse

from labeler.study.data import StudyError


class Estimator(Protocol):
    classes_: np.ndarray

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Any: ...

    def predict_proba(self, X: Any) -> np.ndarray: ...


Factory = Callable[[], Estimator]


def _logreg(class_weight: str | None = None) -> Estimator:
    from sklearn.linear_model import LogisticRegression

    est: Estimator = LogisticRegression(C=10.0, solver="newton-cg", max_iter=500, class_weight=class_weight)
    return est


def _logreg_balanced() -> Estimator:
    return _logreg("balanced")


def _nb() -> Estimator:
    from sklearn.naive_bayes import ComplementNB

    est: Estimator = ComplementNB(alpha=0.3)
    return est


BUILTIN: dict[str, Factory] = {"logreg": _logreg, "logreg_balanced": _logreg_balanced, "nb": _nb}


def make_factory(name: str) -> Factory:
    """The student factory called `name`: a built-in ("logreg", "logreg_balanced", "nb") or "module:function"."""
    if name in BUILTIN:
        return BUILTIN[name]
    if ":" not in name:
        raise StudyError(f"unknown classifier {name!r}: use one of {', '.join(BUILTIN)} or 'module:function'")
    module, _, attr = name.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise StudyError(f"cannot load classifier {name!r} ({exc}); check the module path and function name") from exc
    if not callable(fn):
        raise StudyError(f"classifier {name!r} is not a function that returns an estimator")
    factory: Factory = fn
    return factory


@dataclass(frozen=True)
class Features:
    """TF-IDF (sparse) and LSA (dense, normalised) features of the pool, the test split and any extra texts."""

    pool: sparse.csr_matrix
    test: sparse.csr_matrix
    pool_dense: np.ndarray
    vocabulary: int


def featurize(pool_texts: Sequence[str], test_texts: Sequence[str], *, seed: int = 0, dims: int = 100) -> Features:
    """Fit TF-IDF and LSA on `pool_texts` only and transform both sets."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    vec = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2, max_features=50_000, strip_accents="unicode")
    try:
        pool = vec.fit_transform(pool_texts)
    except ValueError:  # no term left (e.g. empty texts)
        vec = TfidfVectorizer(sublinear_tf=True, strip_accents="unicode")
        pool = vec.fit_transform(pool_texts)
    test = vec.transform(test_texts) if len(test_texts) else sparse.csr_matrix((0, pool.shape[1]))
    k = max(1, min(dims, pool.shape[1] - 1, pool.shape[0] - 1))
    dense = TruncatedSVD(n_components=k, random_state=seed).fit_transform(pool) if k > 1 else pool.toarray()
    return Features(
        pool=sparse.csr_matrix(pool),
        test=sparse.csr_matrix(test),
        pool_dense=normalize(np.asarray(dense, dtype=np.float64)),
        vocabulary=int(pool.shape[1]),
    )


class Fitted:
    """A student fitted on some labels, predicting (n, K) probabilities over the whole label set."""

    def __init__(self, est: Estimator | None, k: int, constant: int | None = None) -> None:
        self.est, self.k, self.constant = est, k, constant

    def proba(self, X: Any) -> np.ndarray:
        n = X.shape[0]
        out = np.zeros((n, self.k))
        if self.est is None:
            if self.constant is None:
                out[:] = 1.0 / self.k
            else:
                out[:, self.constant] = 1.0
            return out
        p = self.est.predict_proba(X)
        out[:, np.asarray(self.est.classes_, dtype=int)] = p
        return out


def fit_proba(factory: Factory, X: Any, y: np.ndarray, k: int, *, sample_weight: np.ndarray | None = None) -> Fitted:
    """Fit a fresh student on rows X with labels y (ints in 0..k-1; no -1)."""
    present = np.unique(y)
    if len(present) == 0:
        return Fitted(None, k)
    if len(present) == 1:
        return Fitted(None, k, int(present[0]))
    est = factory()
    if sample_weight is None:
        est.fit(X, y)
    else:
        est.fit(X, y, sample_weight=sample_weight)
    return Fitted(est, k)


def bagged_committee(
    factory: Factory, X: Any, y: np.ndarray, k: int, *, members: int, rng: np.random.Generator
) -> list[Fitted]:
    """`members` students, each fitted on a bootstrap resample of the labeled rows (query by committee)."""
    n = len(y)
    out = []
    for _ in range(members):
        idx = rng.integers(0, n, size=n)
        out.append(fit_proba(factory, X[idx], y[idx], k))
    return out
