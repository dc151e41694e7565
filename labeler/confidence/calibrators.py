"""Calibration: map a method's confidence to the probability that the top label is right, fitted on the
items that have human labels, chosen by cross-validation, and applied to every item.

Three calibrators, all scored the same way (log-loss of P(top label is right) against whether it was):
    temperature  one scalar T: softmax(log p / T) over the full distribution, T fitted by NLL (scipy)
    platt        logistic regression on logit(top-label confidence) → P(correct) (scikit-learn)
    isotonic     isotonic regression of top-label confidence → P(correct) (scikit-learn)

The kind with the lowest K-fold cross-validated log-loss is refitted on all labelled items and
applied to the others; a labelled item keeps its out-of-fold prediction, made by a calibrator that
never saw it, so "after" numbers on labelled items are honest. Human labels come from the items'
gold column, else the majority of the `reviews` table's labels for the item (ties: label order).

Pure functions and small fitted objects; labeler.confidence.run fits them on a run and stores them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_softmax, logit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold

from labeler.confidence.reliability import ece
from labeler.config import CONFIDENCE_METHODS
from labeler.errors import CalibrationError

__all__ = ["ece"]  # re-exported: calibration reports ECE before and after

ENSEMBLE = "ensemble"
METHODS = (*CONFIDENCE_METHODS, ENSEMBLE)
KINDS = ("temperature", "platt", "isotonic")
PROB_FLOOR = 1e-6  # probabilities are clipped to this before taking logs
ISOTONIC_FLOOR = 1e-3  # isotonic output stays in [floor, 1 - floor], so no log-loss is infinite
MIN_ITEMS = 20




# --- data --------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class CalData:
    """Labelled items for one method: `probs` (n, k) distributions over the labels, `pred` (n,) the index
    of the label the method chose, `truth` (n,) the index of the human label."""

    probs: np.ndarray
    pred: np.ndarray
    truth: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.pred)
        if self.probs.ndim != 2 or self.probs.shape[0] != n or len(self.truth) != n:
            raise ValueError(
                f"shapes disagree: probs {self.probs.shape}, pred {len(self.pred)}, truth {len(self.truth)}"
            )

    @classmethod
    def from_confidence(cls, conf: Sequence[float] | np.ndarray, correct: Sequence[int] | np.ndarray) -> CalData:
        """Two-column data with the given top-label confidences (n,) and correctness (n,) of 0/1."""
        c = np.asarray(conf, dtype=float)
        ok = np.asarray(correct).astype(bool)
        return cls(np.column_stack([c, 1.0 - c]), np.zeros(len(c), dtype=int), np.where(ok, 0, 1))

    def __len__(self) -> int:
        return len(self.pred)

    @property
    def conf(self) -> np.ndarray:
        """(n,) the probability the method gave its own choice."""
        return np.asarray(self.probs[np.arange(len(self.pred)), self.pred], dtype=float)

    @property
    def correct(self) -> np.ndarray:
        """(n,) 1 where the chosen label is the human label, else 0."""
        return (self.pred == self.truth).astype(int)

    def subset(self, idx: np.ndarray) -> CalData:
        return CalData(self.probs[idx], self.pred[idx], self.truth[idx])


# --- metrics -----------------------------------------------------------------------------------
def correctness_log_loss(p_correct: np.ndarray, correct: np.ndarray) -> float:
    """Log-loss of P(top label is right), shape (n,), against whether it was, shape (n,)."""
    return float(log_loss(correct, np.clip(p_correct, 0.0, 1.0), labels=[0, 1]))


# --- calibrators -------------------------------------------------------------------------------
class Calibrator(Protocol):
    kind: str

    def fit(self, data: CalData) -> Calibrator: ...

    def predict(self, data: CalData) -> np.ndarray: ...

    def params(self) -> dict[str, Any]: ...


def _log_probs(probs: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probs, dtype=float), PROB_FLOOR, None)
    return np.asarray(log_softmax(np.log(p), axis=1))


class TemperatureScaling:
    """softmax(log p / T) with one scalar T > 0 minimising the NLL of the human labels."""

    kind = "temperature"
    bounds = (0.01, 100.0)

    def __init__(self, temperature: float | None = None) -> None:
        self.temperature_ = temperature

    def fit(self, data: CalData) -> TemperatureScaling:
        logp = _log_probs(data.probs)
        rows = np.arange(len(data))

        def nll(log_t: float) -> float:
            return float(-np.mean(log_softmax(logp / math.exp(log_t), axis=1)[rows, data.truth]))

        lo, hi = (math.log(b) for b in self.bounds)
        res = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-5})
        self.temperature_ = math.exp(float(res.x))
        return self

    def transform(self, probs: np.ndarray) -> np.ndarray:
        """(n, k) calibrated distributions."""
        if self.temperature_ is None:
            raise ValueError("fit the calibrator first")
        return np.asarray(np.exp(log_softmax(_log_probs(probs) / self.temperature_, axis=1)))

    def predict(self, data: CalData) -> np.ndarray:
        return self.transform(data.probs)[np.arange(len(data)), data.pred]

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature_}


class PlattScaling:
    """P(correct) = sigmoid(coef · logit(conf) + intercept), fitted by logistic regression."""

    kind = "platt"

    def __init__(self, coef: float | None = None, intercept: float | None = None) -> None:
        self.coef_ = coef
        self.intercept_ = intercept

    @staticmethod
    def _x(data: CalData) -> np.ndarray:
        return np.asarray(logit(np.clip(data.conf, PROB_FLOOR, 1 - PROB_FLOOR)))

    def fit(self, data: CalData) -> PlattScaling:
        lr = LogisticRegression().fit(self._x(data).reshape(-1, 1), data.correct)
        self.coef_ = float(lr.coef_[0, 0])
        self.intercept_ = float(lr.intercept_[0])
        return self

    def predict(self, data: CalData) -> np.ndarray:
        if self.coef_ is None or self.intercept_ is None:
            raise ValueError("fit the calibrator first")
        return np.asarray(expit(self.coef_ * self._x(data) + self.intercept_))

    def params(self) -> dict[str, Any]:
        return {"coef": self.coef_, "intercept": self.intercept_}


class IsotonicCalibration:
    """P(correct) = a non-decreasing step function of conf, fitted by isotonic regression; stored as its
    thresholds X → y and applied by linear interpolation between them (as IsotonicRegression predicts)."""

    kind = "isotonic"

    def __init__(self, x: Sequence[float] | None = None, y: Sequence[float] | None = None) -> None:
        self.x_ = None if x is None else np.asarray(x, dtype=float)
        self.y_ = None if y is None else np.asarray(y, dtype=float)

    def fit(self, data: CalData) -> IsotonicCalibration:
        iso = IsotonicRegression(y_min=ISOTONIC_FLOOR, y_max=1 - ISOTONIC_FLOOR, out_of_bounds="clip")
        iso.fit(data.conf, data.correct)
        self.x_ = np.asarray(iso.X_thresholds_, dtype=float)
        self.y_ = np.asarray(iso.y_thresholds_, dtype=float)
        return self

    def predict(self, data: CalData) -> np.ndarray:
        if self.x_ is None or self.y_ is None:
            raise ValueError("fit the calibrator first")
        return np.interp(data.conf, self.x_, self.y_)

    def params(self) -> dict[str, Any]:
        return {"X": [] if self.x_ is None else self.x_.tolist(), "y": [] if self.y_ is None else self.y_.tolist()}


FACTORIES: dict[str, Callable[[], Calibrator]] = {
    "temperature": TemperatureScaling,
    "platt": PlattScaling,
    "isotonic": IsotonicCalibration,
}


def from_params(kind: str, params: Mapping[str, Any]) -> Calibrator:
    """Rebuild a fitted calibrator from what `params()` returned (as stored in calibrator.json)."""
    if kind == "temperature":
        return TemperatureScaling(params["temperature"])
    if kind == "platt":
        return PlattScaling(params["coef"], params["intercept"])
    if kind == "isotonic":
        return IsotonicCalibration(params["X"], params["y"])
    raise CalibrationError(f"unknown calibrator kind {kind!r} in calibrator.json; run `labeler calibrate` again")


# --- selection ---------------------------------------------------------------------------------
def folds(data: CalData, *, n_splits: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs of stratified K-fold on correctness. K shrinks to the rarer class's count,
    so every training fold holds right and wrong answers; fewer than 2 of either is a CalibrationError."""
    counts = np.bincount(data.correct, minlength=2)
    k = min(n_splits, int(counts.min()))
    if k < 2:
        raise CalibrationError(
            f"need at least 2 right and 2 wrong top labels among the human-labelled items "
            f"(have {counts[1]} right, {counts[0]} wrong); label more items"
        )
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(skf.split(np.zeros(len(data)), data.correct))


def cross_val_predict(
    make: Callable[[], Calibrator], data: CalData, splits: Sequence[tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    """Out-of-fold P(correct), shape (n,): each item predicted by a calibrator fitted on the other folds."""
    out = np.full(len(data), np.nan)
    for train, test in splits:
        out[test] = make().fit(data.subset(train)).predict(data.subset(test))
    return out


@dataclass(frozen=True)
class Selection:
    """The chosen kind, its calibrator refitted on all items, its out-of-fold predictions (n,), and the
    cross-validated log-loss of every kind tried."""

    kind: str
    calibrator: Calibrator
    oof: np.ndarray
    cv_log_loss: Mapping[str, float] = field(default_factory=dict)


def select_calibrator(
    data: CalData, *, kinds: Sequence[str] = KINDS, n_splits: int = 5, seed: int = 0, min_items: int = MIN_ITEMS
) -> Selection:
    """Try each kind with the same folds; keep the lowest cross-validated log-loss (ties: `kinds` order)."""
    if len(data) < min_items:
        raise CalibrationError(f"need at least {min_items} human-labelled items to calibrate (have {len(data)})")
    splits = folds(data, n_splits=n_splits, seed=seed)
    oofs = {k: cross_val_predict(FACTORIES[k], data, splits) for k in kinds}
    losses = {k: correctness_log_loss(oof, data.correct) for k, oof in oofs.items()}
    best = min(kinds, key=lambda k: losses[k])
    return Selection(best, FACTORIES[best]().fit(data), oofs[best], losses)


# --- the run -----------------------------------------------------------------------------------
