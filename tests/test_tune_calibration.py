"""Calibration after correction, on a synthetic model with a known prior bias (label 0's probability ×8)
that is also overconfident (logits ×1.6): the calibrator a tuning installs is fitted on the corrected
answers' out-of-fold predictions (labeler.tune.calibration), and on 3,000 items the tuning never saw —
corrected, then calibrated — its ECE stays ≤ 0.05; a calibrator fitted on the raw answers (before the
correction, as `labeler calibrate` on the run before tuning would have) is clearly worse there."""

from __future__ import annotations

import numpy as np
import pytest

from labeler.confidence.bias import apply_offsets
from labeler.confidence.calibrators import CalData, from_params, select_calibrator
from labeler.confidence.correct import fit_offsets_for
from labeler.confidence.reliability import ece
from labeler.tune.calibration import fit_after_correction, stored
from labeler.tune.protocol import bootstrap_indices, score_candidate, stratified_folds

K = 3
BIAS = np.array([8.0, 1.0, 1.0])
SEEDS = range(6)


def draw(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    logits = rng.normal(scale=2.0, size=(n, K))
    post = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(K, p=p) for p in post])
    z = np.exp(1.6 * logits) * BIAS
    return z / z.sum(1, keepdims=True), y


@pytest.mark.parametrize("kind", ["offsets_ll", "offsets_f1"])
def test_the_calibrator_fitted_after_correction_is_calibrated_on_unseen_items(kind: str) -> None:
    new_ece, old_ece, uncalibrated = [], [], []
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        probs, y = draw(200, rng)  # the tuning items
        fresh, y_fresh = draw(3000, rng)  # items the tuning never saw
        ids = [f"i{j}" for j in range(len(y))]
        score = score_candidate(
            "c",
            probs,
            y,
            kinds=(kind,),
            fold_of=stratified_folds(y, K, n_splits=5, seed=seed),
            boot=bootstrap_indices(len(y), n_boot=100, seed=seed),
        )[0]
        cal = fit_after_correction(score.oof_probs, y, ids)
        assert cal is not None and set(cal["out_of_fold"]) == set(ids)
        assert stored(cal, len(ids)).out_of_fold == cal["out_of_fold"]  # tuning items keep out-of-fold values
        corrected = apply_offsets(fresh, fit_offsets_for(kind, probs, y))  # what the run shows after tuning
        unseen = CalData(corrected, corrected.argmax(1), y_fresh)
        new_ece.append(ece(from_params(cal["kind"], cal["params"]).predict(unseen), unseen.correct))
        before = select_calibrator(CalData(probs, probs.argmax(1), y))  # the old way: fitted on raw answers
        old_ece.append(ece(before.calibrator.predict(unseen), unseen.correct))
        uncalibrated.append(ece(unseen.conf, unseen.correct))
    assert np.mean(uncalibrated) > 0.07  # the corrected confidence itself is off: calibration is needed
    assert np.mean(new_ece) <= 0.05, f"ECE after correction {np.round(new_ece, 3)}"
    assert np.mean(old_ece) >= np.mean(new_ece) + 0.02, f"raw-fitted {np.round(old_ece, 3)} vs {np.round(new_ece, 3)}"


def test_too_few_wrong_answers_give_no_calibrator() -> None:
    y = np.zeros(30, dtype=int)
    probs = np.tile([0.9, 0.05, 0.05], (30, 1))  # every answer right: nothing to calibrate against
    assert fit_after_correction(probs, y, [str(i) for i in range(30)]) is None
