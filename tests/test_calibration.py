"""Calibration on synthetic data whose miscalibration is known: temperature recovery, Platt and isotonic
fixing over-confidence, cross-validated choice, honest out-of-fold predictions, and a run end to end."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.special import expit, logit, softmax
from test_ensemble import make_store, make_task

from labeler.cli.humans import register
from labeler.confidence.calibrators import (
    KINDS,
    CalData,
    IsotonicCalibration,
    PlattScaling,
    TemperatureScaling,
    correctness_log_loss,
    cross_val_predict,
    ece,
    folds,
    from_params,
    select_calibrator,
)
from labeler.confidence.run import calibrate_run, combine_run, human_labels, method_data
from labeler.errors import CalibrationError
from labeler.store.rows import Review
from labeler.types import ItemResult

T_TRUE = 2.5


def temperature_data(n: int, *, k: int = 4, seed: int = 0) -> CalData:
    """A model whose distribution is softmax(z) while the truth is drawn from softmax(z / 2.5)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=3.0, size=(n, k))
    truth_probs = softmax(z / T_TRUE, axis=1)
    truth = (rng.random(n)[:, None] > np.cumsum(truth_probs, axis=1)).sum(axis=1)
    probs = softmax(z, axis=1)
    return CalData(probs, probs.argmax(axis=1), truth)


def overconfident(n: int, *, seed: int = 0) -> tuple[CalData, np.ndarray]:
    """Scores that push the true P(correct) away from 0.5: conf = sigmoid(3 · logit(p))."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.35, 0.95, size=n)
    conf = expit(3.0 * logit(p))
    correct = (rng.random(n) < p).astype(int)
    return CalData.from_confidence(conf, correct), p


# --- ece ---------------------------------------------------------------------------------------
def test_ece_known_answers() -> None:
    assert ece([0.8] * 10, [1] * 8 + [0] * 2) == pytest.approx(0.0)
    assert ece([0.9] * 10, [1] * 5 + [0] * 5) == pytest.approx(0.4)
    # two bins of equal weight: |1 - 0.95| and |0 - 0.25|
    assert ece([0.95, 0.95, 0.25, 0.25], [1, 1, 0, 0]) == pytest.approx((0.05 + 0.25) / 2)
    assert ece([1.0], [1]) == pytest.approx(0.0)  # confidence 1 falls in the last bin
    assert ece([], []) == 0.0


def test_caldata_from_confidence() -> None:
    d = CalData.from_confidence([0.9, 0.6], [1, 0])
    assert d.conf.tolist() == pytest.approx([0.9, 0.6])
    assert d.correct.tolist() == [1, 0]


# --- calibrators -------------------------------------------------------------------------------
def test_temperature_scaling_recovers_the_temperature() -> None:
    data = temperature_data(5000)
    t = TemperatureScaling().fit(data).temperature_
    assert t == pytest.approx(T_TRUE, abs=0.2)


def test_temperature_one_is_left_alone_when_calibrated() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(scale=2.0, size=(4000, 3))
    probs = softmax(z, axis=1)
    truth = (rng.random(4000)[:, None] > np.cumsum(probs, axis=1)).sum(axis=1)
    t = TemperatureScaling().fit(CalData(probs, probs.argmax(axis=1), truth)).temperature_
    assert t == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("make", [PlattScaling, IsotonicCalibration, TemperatureScaling])
def test_calibrators_reduce_ece_on_overconfident_scores(make: Any) -> None:
    train, _ = overconfident(3000, seed=1)
    test, _ = overconfident(3000, seed=2)
    before = ece(test.conf, test.correct)
    after = ece(make().fit(train).predict(test), test.correct)
    assert before > 0.1
    assert after < before / 3


def test_stored_params_give_the_same_predictions() -> None:
    data, _ = overconfident(500, seed=3)
    for make in (TemperatureScaling, PlattScaling, IsotonicCalibration):
        cal = make().fit(data)
        restored = from_params(cal.kind, json.loads(json.dumps(cal.params())))
        np.testing.assert_allclose(restored.predict(data), cal.predict(data))


def test_unknown_kind_is_a_calibration_error() -> None:
    with pytest.raises(CalibrationError, match="calibrate"):
        from_params("beta", {})


# --- selection ---------------------------------------------------------------------------------
def test_cross_validation_picks_temperature_for_temperature_data() -> None:
    sel = select_calibrator(temperature_data(5000, seed=4))
    assert sel.kind == "temperature"
    assert set(sel.cv_log_loss) == set(KINDS)
    assert sel.cv_log_loss["temperature"] == min(sel.cv_log_loss.values())


def test_cross_validation_prefers_a_binary_calibrator_when_temperature_cannot_fit() -> None:
    # P(correct) rises with confidence only above 0.7 and is flat below: no single temperature gives that
    rng = np.random.default_rng(5)
    conf = rng.uniform(0.5, 1.0, size=3000)
    p = np.where(conf < 0.7, 0.5, 0.5 + (conf - 0.7) * 1.6)
    data = CalData.from_confidence(conf, (rng.random(3000) < p).astype(int))
    assert select_calibrator(data).kind in ("platt", "isotonic")


class Recording:
    """A calibrator that remembers which items (by their unique confidence) it was fitted on and asked about."""

    kind = "recording"

    def __init__(self, fits: list[set[float]], asked: list[set[float]]) -> None:
        self.fits, self.asked = fits, asked
        self.seen: set[float] = set()

    def fit(self, data: CalData) -> Recording:
        self.seen = set(data.conf.tolist())
        self.fits.append(self.seen)
        return self

    def predict(self, data: CalData) -> np.ndarray:
        asked = set(data.conf.tolist())
        assert not asked & self.seen, "an item was predicted by a calibrator fitted on it"
        self.asked.append(asked)
        return np.full(len(data), 0.5)

    def params(self) -> dict[str, Any]:
        return {}


def test_out_of_fold_predictions_never_see_their_own_item() -> None:
    rng = np.random.default_rng(6)
    conf = rng.permutation(np.linspace(0.4, 0.99, 200))  # unique, so confidence identifies the item
    data = CalData.from_confidence(conf, (rng.random(200) < conf).astype(int))
    fits: list[set[float]] = []
    asked: list[set[float]] = []
    splits = folds(data, n_splits=5, seed=0)
    oof = cross_val_predict(lambda: Recording(fits, asked), data, splits)
    assert len(fits) == 5
    assert not np.isnan(oof).any()
    everyone = set(conf.tolist())
    assert sum(len(a) for a in asked) == 200  # each item predicted exactly once
    assert set().union(*asked) == everyone
    for fitted, a in zip(fits, asked, strict=True):
        assert fitted | a == everyone  # fitted on all the others


def test_too_few_or_one_sided_labels_are_refused() -> None:
    data, _ = overconfident(10)
    with pytest.raises(CalibrationError, match="at least 20"):
        select_calibrator(data)
    all_right = CalData.from_confidence(np.linspace(0.5, 0.9, 50), np.ones(50))
    with pytest.raises(CalibrationError, match="right and 2 wrong"):
        select_calibrator(all_right)


def test_correctness_log_loss_known_value() -> None:
    assert correctness_log_loss(np.array([0.8, 0.8]), np.array([1, 0])) == pytest.approx(
        -(np.log(0.8) + np.log(0.2)) / 2
    )


# --- a run -------------------------------------------------------------------------------------
LABELS = ("business", "sport", "tech")


def labelled_run(root: Path, n: int = 300, n_gold: int = 240, seed: int = 7) -> tuple[Any, Any]:
    """One-member-that-matters run: every member answers with the same over-confident softmax(z);
    the gold label is drawn from softmax(z / 2.5) for the first n_gold items only."""
    task = make_task(root)
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=3.0, size=(n, 3))
    truth_probs = softmax(z / T_TRUE, axis=1)
    truth = (rng.random(n)[:, None] > np.cumsum(truth_probs, axis=1)).sum(axis=1)
    ids = [f"i{j:04d}" for j in range(n)]
    gold = {ids[j]: LABELS[truth[j]] for j in range(n_gold)}
    store = make_store(root, task, ids, gold)
    probs = softmax(z, axis=1)
    for j, item_id in enumerate(ids):
        dist = {lab: float(probs[j, c]) for c, lab in enumerate(LABELS)}
        label = LABELS[int(probs[j].argmax())]
        for m in task.members:
            store.put_result(
                ItemResult(
                    item_id=item_id,
                    member=m.name,
                    status="labeled",
                    label=label,
                    confidence=dist[label],
                    distributions={"logprob": dist},
                )
            )
    return task, store


def test_calibrate_run_fits_applies_and_keeps_labelled_items_out_of_fold(tmp_path: Path) -> None:
    task, store = labelled_run(tmp_path)
    reports = calibrate_run(store, task)
    by_method = {r.method: r for r in reports}
    assert set(by_method) == {"logprob", "ensemble"}
    ens = by_method["ensemble"]
    assert ens.n == 240
    assert ens.skipped is None
    assert ens.ece_after is not None and ens.ece_before is not None
    assert ens.ece_after < ens.ece_before
    assert ens.log_loss_after is not None and ens.log_loss_before is not None
    assert ens.log_loss_after < ens.log_loss_before

    saved = json.loads((store.run_dir / "calibrator.json").read_text())
    assert set(saved) == {"logprob", "ensemble"}
    row = store.calibrator("ensemble")
    assert row is not None
    assert row.kind == ens.kind
    assert row.n_fit == 240
    assert len(row.out_of_fold) == 240

    # unlabelled items get the stored calibrator's prediction; labelled items do not get an in-sample one
    cal = from_params(row.kind, row.params)
    rows = list(store.combined_rows())
    assert all(r.calibrated is not None for r in rows)
    index = {lab: i for i, lab in enumerate(LABELS)}
    probs = np.array([[r.distribution[lab] for lab in LABELS] for r in rows])
    pred = np.array([index[str(r.label)] for r in rows])
    full_fit = cal.predict(CalData(probs, pred, pred))
    stored = np.array([r.calibrated for r in rows])
    np.testing.assert_allclose(stored[240:], full_fit[240:])
    assert not np.allclose(stored[:240], full_fit[:240])
    ids, data = method_data(store, task, "ensemble", human_labels(store, LABELS))
    oof = select_calibrator(data).oof  # same folds (seed 0) as calibrate_run
    by_id = {r.item_id: r.calibrated for r in rows}
    np.testing.assert_allclose([by_id[i] for i in ids], oof)

    # a resume re-combines the results: the stored calibrator is re-applied, nothing calibrated is lost
    combine_run(store, task)
    again = {r.item_id: r.calibrated for r in store.combined_rows()}
    assert again == pytest.approx(by_id)
    store.close()


def test_human_labels_from_gold_and_reviews(tmp_path: Path) -> None:
    task = make_task(tmp_path)
    store = make_store(tmp_path, task, ["a", "b", "c", "d"], {"a": "sport", "b": "nonsense"})
    store.put_reviews(
        Review(i, r, lab)
        for i, r, lab in [
            ("a", "r1", "tech"),  # a tie between gold and a review goes to gold
            ("c", "r1", "tech"),
            ("c", "r2", "tech"),
            ("c", "r3", "business"),
            ("d", "r1", "tech"),  # a tie without gold goes to the earliest answer (labeler.humans)
            ("d", "r2", "business"),
        ]
    )
    assert human_labels(store, LABELS) == {"a": "sport", "c": "tech", "d": "tech"}
    store.close()


def test_calibrate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, store = labelled_run(tmp_path, n=120, n_gold=120)
    run_dir = store.run_dir
    store.close()
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["calibrate", str(run_dir), "--method", "ensemble"])
    assert args.fn(args) == 0
    out = capsys.readouterr().out
    assert "ensemble" in out
    assert "logprob" not in out
    assert (run_dir / "calibrator.json").exists()


def test_calibrate_command_without_human_labels(tmp_path: Path) -> None:
    _, store = labelled_run(tmp_path, n=30, n_gold=0)
    run_dir = store.run_dir
    store.close()
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["calibrate", str(run_dir)])
    with pytest.raises(CalibrationError, match="gold"):
        args.fn(args)
