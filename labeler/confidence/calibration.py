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

Written: the `calibrators` table and calibrator.json (one entry per method), and, for the method
"ensemble", `combined.calibrated` for every item.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_softmax, logit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold

from labeler.confidence.ensemble import COMBINED_SCHEMA, combine_item, combine_run, grouped_views, needs_combine
from labeler.config import CONFIDENCE_METHODS, TaskConfig
from labeler.errors import CalibrationError
from labeler.evaluate.metrics import reference_label
from labeler.store import RunStore

ENSEMBLE = "ensemble"
METHODS = (*CONFIDENCE_METHODS, ENSEMBLE)
KINDS = ("temperature", "platt", "isotonic")
PROB_FLOOR = 1e-6  # probabilities are clipped to this before taking logs
ISOTONIC_FLOOR = 1e-3  # isotonic output stays in [floor, 1 - floor], so no log-loss is infinite
MIN_ITEMS = 20

CALIBRATORS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS calibrators(method TEXT PRIMARY KEY, kind TEXT, params TEXT, cv_log_loss REAL,"
    " n_fit INTEGER, fitted_at REAL)"
)



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
def ece(conf: Sequence[float] | np.ndarray, correct: Sequence[int] | np.ndarray, *, bins: int = 10) -> float:
    """Expected calibration error: the mean over `bins` equal-width confidence bins on [0, 1] of
    |accuracy − mean confidence|, weighted by the bin's share of items. conf and correct: shape (n,)."""
    c = np.asarray(conf, dtype=float)
    y = np.asarray(correct, dtype=float)
    if c.size == 0:
        return 0.0
    which = np.minimum((c * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() / c.size * abs(y[mask].mean() - c[mask].mean())
    return float(total)


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
def human_labels(store: RunStore, labels: Sequence[str]) -> dict[str, str]:
    """item id → reference label (`metrics.reference_label`) over the gold column and the reviews, for the
    items that have one. Labels outside the label set are ignored."""
    known = set(labels)
    humans: dict[str, dict[str, str]] = {}
    if store.has_table("reviews"):
        for item_id, reviewer, label in store.conn.execute(
            "SELECT item_id, reviewer, label FROM reviews WHERE label IS NOT NULL"
        ):
            if label in known:
                humans.setdefault(item_id, {})[str(reviewer)] = label
    for item_id, gold in store.conn.execute("SELECT id, gold FROM items WHERE gold IS NOT NULL"):
        if gold in known:
            humans.setdefault(item_id, {})["gold"] = gold
    out = {}
    for item_id, h in humans.items():
        ref = reference_label(h, labels=labels)
        if ref is not None:
            out[item_id] = ref
    return out


def _vector(dist: Mapping[str, float], labels: Sequence[str]) -> list[float]:
    return [float(dist.get(lab, 0.0)) for lab in labels]


def _method_items(store: RunStore, task: TaskConfig, method: str) -> Iterator[tuple[str, str, list[float]]]:
    """(item id, chosen label, distribution over labels) per item for `method`: the ensemble's answer from
    the combined table, or the members' answers under that one method alone."""
    labels = task.label_names
    if method == ENSEMBLE:
        for item_id, label, dist in store.conn.execute(
            "SELECT item_id, label, distribution FROM combined WHERE label IS NOT NULL"
        ):
            yield item_id, label, _vector(json.loads(dist), labels)
        return
    for item_id, views in grouped_views(store):
        having = {name: v for name, v in views.items() if method in v.distributions}
        if not having:
            continue
        c = combine_item(having, labels=labels, method_order=(method,), combine=task.confidence.combine)
        if c.label is not None:
            yield item_id, c.label, _vector(c.distribution, labels)


def method_data(store: RunStore, task: TaskConfig, method: str, human: Mapping[str, str]) -> tuple[list[str], CalData]:
    """The human-labelled items' ids and their CalData for `method`."""
    index = {lab: i for i, lab in enumerate(task.label_names)}
    ids, probs, pred, truth = [], [], [], []
    for item_id, label, vec in _method_items(store, task, method):
        if item_id in human:
            ids.append(item_id)
            probs.append(vec)
            pred.append(index[label])
            truth.append(index[human[item_id]])
    k = len(index)
    data = CalData(
        np.asarray(probs, dtype=float).reshape(-1, k), np.asarray(pred, dtype=int), np.asarray(truth, dtype=int)
    )
    return ids, data


@dataclass(frozen=True)
class MethodReport:
    """One method's calibration: before = raw confidence; after = out-of-fold calibrated, on the n items."""

    method: str
    n: int
    kind: str | None = None
    ece_before: float | None = None
    ece_after: float | None = None
    log_loss_before: float | None = None
    log_loss_after: float | None = None
    cv_log_loss: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    skipped: str | None = None  # why it was not calibrated


def _persist(store: RunStore, method: str, sel: Selection, n: int) -> dict[str, Any]:
    entry = {
        "kind": sel.kind,
        "params": sel.calibrator.params(),
        "cv_log_loss": sel.cv_log_loss[sel.kind],
        "cv_log_loss_by_kind": dict(sel.cv_log_loss),
        "n_fit": n,
        "fitted_at": time.time(),
    }
    store.conn.execute(CALIBRATORS_SCHEMA)
    store.conn.execute(
        "INSERT OR REPLACE INTO calibrators VALUES (?, ?, ?, ?, ?, ?)",
        (method, sel.kind, json.dumps(entry["params"]), entry["cv_log_loss"], n, entry["fitted_at"]),
    )
    path = store.run_dir / "calibrator.json"
    saved = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    saved[method] = entry
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(saved, indent=2), encoding="utf-8")
    tmp.replace(path)
    return entry


def load_calibrator(run_dir: Path, method: str = ENSEMBLE) -> Calibrator | None:
    """The calibrator stored for `method` in run_dir/calibrator.json, or None."""
    path = run_dir / "calibrator.json"
    if not path.exists():
        return None
    entry = json.loads(path.read_text(encoding="utf-8")).get(method)
    return None if entry is None else from_params(entry["kind"], entry["params"])


def apply_ensemble(store: RunStore, task: TaskConfig, calibrator: Calibrator, oof: Mapping[str, float]) -> int:
    """Write combined.calibrated for every item with a label: its out-of-fold value if it has one, else the
    calibrator's prediction. Reads and writes in keyset batches. Returns the number of items written."""
    index = {lab: i for i, lab in enumerate(task.label_names)}
    k = len(index)
    last, n = "", 0
    conn = store.conn
    while True:
        rows = conn.execute(
            "SELECT item_id, label, distribution FROM combined WHERE item_id > ? ORDER BY item_id LIMIT 2000", (last,)
        ).fetchall()
        if not rows:
            return n
        last = rows[-1]["item_id"]
        labelled = [r for r in rows if r["label"] in index]
        if labelled:
            probs = np.asarray([_vector(json.loads(r["distribution"]), task.label_names) for r in labelled]).reshape(
                -1, k
            )
            pred = np.asarray([index[r["label"]] for r in labelled], dtype=int)
            p = calibrator.predict(CalData(probs, pred, pred))
            updates = [(oof.get(r["item_id"], float(v)), r["item_id"]) for r, v in zip(labelled, p, strict=True)]
            conn.execute("BEGIN")
            conn.executemany("UPDATE combined SET calibrated = ? WHERE item_id = ?", updates)
            conn.execute("COMMIT")
            n += len(updates)


def calibrate_run(
    store: RunStore,
    task: TaskConfig,
    *,
    methods: Sequence[str] | None = None,
    n_splits: int = 5,
    seed: int = 0,
    min_items: int = MIN_ITEMS,
) -> list[MethodReport]:
    """Combine (if the results changed), then fit, choose, persist and (for "ensemble") apply a calibrator
    per method. Default methods: the task's confidence methods and "ensemble"."""
    if needs_combine(store):
        combine_run(store, task)
    store.conn.execute(COMBINED_SCHEMA)
    methods = list(methods or (*task.confidence.methods, ENSEMBLE))
    human = human_labels(store, task.label_names)
    reports = []
    for method in methods:
        if method not in METHODS:
            raise CalibrationError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
        ids, data = method_data(store, task, method, human)
        try:
            sel = select_calibrator(data, n_splits=n_splits, seed=seed, min_items=min_items)
        except CalibrationError as exc:
            reports.append(MethodReport(method, len(data), skipped=str(exc)))
            continue
        entry = _persist(store, method, sel, len(data))
        if method == ENSEMBLE:
            apply_ensemble(store, task, sel.calibrator, dict(zip(ids, sel.oof.tolist(), strict=True)))
        conf, correct = data.conf, data.correct
        reports.append(
            MethodReport(
                method=method,
                n=len(data),
                kind=sel.kind,
                ece_before=ece(conf, correct),
                ece_after=ece(sel.oof, correct),
                log_loss_before=correctness_log_loss(conf, correct),
                log_loss_after=correctness_log_loss(sel.oof, correct),
                cv_log_loss=sel.cv_log_loss,
                params=entry["params"],
            )
        )
    return reports


def format_reports(reports: Sequence[MethodReport]) -> str:
    lines = [f"{'method':12s} {'n':>6s}  {'kind':11s}  {'ECE before → after':20s}  log-loss before → after"]
    for r in reports:
        if r.skipped:
            lines.append(f"{r.method:12s} {r.n:6d}  skipped: {r.skipped}")
            continue
        lines.append(
            f"{r.method:12s} {r.n:6d}  {r.kind or '':11s}  {r.ece_before:.3f} → {r.ece_after:.3f}{'':7s}"
            f"  {r.log_loss_before:.3f} → {r.log_loss_after:.3f}"
        )
    lines.append("after = out-of-fold: each labelled item scored by a calibrator fitted without it")
    return "\n".join(lines)


def calibrate_path(
    run_dir: Path, *, methods: Sequence[str] | None = None, n_splits: int = 5, seed: int = 0
) -> list[MethodReport]:
    """`labeler calibrate`: fit, store and apply the calibrators of one run; an error when nothing could be."""
    store = RunStore.open(run_dir)
    try:
        reports = calibrate_run(store, store.task(), methods=methods, n_splits=n_splits, seed=seed)
    finally:
        store.close()
    if all(r.skipped for r in reports):
        raise CalibrationError(
            "nothing was calibrated: add a gold column (input.gold_column) or human reviews for at least "
            f"{MIN_ITEMS} items, with right and wrong model answers among them"
        )
    return reports
