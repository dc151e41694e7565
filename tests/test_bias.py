"""Bias correction on a synthetic model whose prior bias is known: the correction recovers the labels an
unbiased model would give, and cross-validation never scores an item with offsets fitted on it."""

from __future__ import annotations

import numpy as np
import pytest

from labeler.confidence.bias import (
    apply_offsets,
    contextual_offsets,
    cross_validated,
    fit_offsets,
    macro_f1,
)

K = 3
BIAS = np.array([12.0, 1.0, 1.0])  # the model multiplies label 0's probability by 12


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(biased model probs (n, K), the unbiased posterior's argmax (n,), true labels (n,) drawn from it)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.5, size=(n, K))
    post = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(K, p=p) for p in post])
    biased = post * BIAS
    biased /= biased.sum(1, keepdims=True)
    return biased, post.argmax(1), y


def test_the_synthetic_model_is_biased() -> None:
    probs, unbiased, y = synthetic(2000, 0)
    pred = probs.argmax(1)
    over = np.sum(pred == 0) / np.sum(y == 0)
    assert over > 1.8  # label 0 over-predicted
    assert np.mean(pred == unbiased) < 0.75


def test_contextual_calibration_divides_out_the_known_prior_exactly() -> None:
    probs, unbiased, _ = synthetic(500, 1)
    content_free = np.tile(BIAS / BIAS.sum(), (3, 1))  # the model's answer on "N/A", "", "[MASK]"
    b = contextual_offsets(content_free)
    corrected = apply_offsets(probs, b)
    assert np.array_equal(corrected.argmax(1), unbiased)
    np.testing.assert_allclose(corrected.sum(1), 1.0)


@pytest.mark.parametrize("objective", ["macro_f1", "log_loss"])
def test_offsets_fitted_on_human_labels_remove_the_bias(objective: str) -> None:
    probs, unbiased, y = synthetic(3000, 2)
    train, test = slice(0, 300), slice(300, None)  # 300 human labels, scored on the other 2,700
    b = fit_offsets(probs[train], y[train], objective=objective)
    pred = (np.log(probs[test]) + b).argmax(1)
    assert np.mean(pred == unbiased[test]) > 0.9
    over = np.sum(pred == 0) / np.sum(y[test] == 0)
    assert 0.8 < over < 1.25
    assert macro_f1(y[test], pred, K) > macro_f1(y[test], probs[test].argmax(1), K) + 0.1
    # the fitted prior shift is close to the true one: b_0 - b_other ≈ -log 12
    assert b[0] - b[1:].mean() == pytest.approx(-np.log(12.0), abs=0.8)


def test_cross_validation_never_scores_an_item_with_offsets_fitted_on_it() -> None:
    probs, _, y = synthetic(200, 3)
    cv = cross_validated(probs, y, n_splits=5, seed=0)
    for i in range(len(y)):
        assert i not in cv.fitted_on[cv.fold_of[i]]  # by construction: item i's fold left it out
    assert sorted(set(cv.fold_of.tolist())) == [0, 1, 2, 3, 4]
    assert all(len(f) + np.sum(cv.fold_of == j) == len(y) for j, f in enumerate(cv.fitted_on))
    assert macro_f1(y, cv.oof_pred, K) > macro_f1(y, probs.argmax(1), K)
