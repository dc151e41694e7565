"""Calibration after correction: the calibrator a tuning installs is fitted on the *corrected* answers'
out-of-fold predictions — every tuning item's distribution corrected by offsets fitted without its fold
(labeler.tune.protocol's Score.oof_probs) — so it maps the confidence the run will show (after the
correction) to P(label right), and no item's value comes from a correction or a calibrator fitted on it.

A calibrator fitted before the correction (on the raw answers, e.g. by `labeler calibrate` on the run
before tuning) maps the wrong confidences: the correction moves both the labels and their confidence.
Installed wherever the correction is: in the run itself when tuning applies it in place, and in the
relabeled run (labeler.tune.relabel). The tuning items keep their out-of-fold calibrated values.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from labeler.confidence.calibrators import ENSEMBLE, CalData, select_calibrator
from labeler.errors import CalibrationError
from labeler.store.rows import StoredCalibrator


def fit_after_correction(oof_probs: np.ndarray, y: np.ndarray, ids: Sequence[str]) -> dict[str, Any] | None:
    """The calibrator of corrected out-of-fold distributions `oof_probs` (n, k) against human labels `y`
    (n,), as stored in the tuning report: kind, params, cross-validated log-loss and each item's
    out-of-fold calibrated value; None when the items cannot support one (too few right or wrong)."""
    pred = np.asarray(np.argmax(oof_probs, axis=1), dtype=int)
    try:
        sel = select_calibrator(CalData(np.asarray(oof_probs, dtype=float), pred, np.asarray(y, dtype=int)))
    except CalibrationError:
        return None
    return {
        "kind": sel.kind,
        "params": sel.calibrator.params(),
        "cv_log_loss": float(sel.cv_log_loss[sel.kind]),
        "fitted_on": "corrected out-of-fold predictions",
        "out_of_fold": {i: round(float(v), 6) for i, v in zip(ids, sel.oof, strict=True)},
    }


def stored(cal: Mapping[str, Any], n_fit: int) -> StoredCalibrator:
    """The run's ensemble calibrator from a tuning report's "calibrator" entry."""
    return StoredCalibrator(
        ENSEMBLE,
        cal["kind"],
        cal["params"],
        cal["cv_log_loss"],
        n_fit,
        time.time(),
        {str(k): float(v) for k, v in cal.get("out_of_fold", {}).items()},
    )
