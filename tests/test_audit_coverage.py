"""Coverage of the audit intervals at the sizes real audits have (1%, 2% and 5% of a 1,500-item corpus).

Each simulation draws a corpus whose per-label accuracy and prevalence are known, labels it with a simulated
LLM, draws a stratified audit by predicted label exactly as the router does (labeler.review.router.allocate:
proportional, at least one item per stratum), and checks whether the nominal-95% intervals for the corpus
accuracy and for every label's corpus share hold the corpus's true value. `pytest -s` prints the figures."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from labeler.evaluate import metrics as M
from labeler.review.router import allocate

N_ITEMS = 1500
SIZES = (15, 30, 75)
SIMS = 600  # per size: the standard error of a 95% coverage is then 0.9 points
MIN_COVERAGE = 0.93


@dataclass(frozen=True)
class Scenario:
    prevalence: tuple[float, ...]  # true share of each label
    accuracy: tuple[float, ...]  # P(LLM label right | true label)
    attractor: float  # share of every label's errors that go to the first label (the rest spread evenly)


SCENARIOS = {
    # the bundled news corpus: five equal labels, per-label accuracy as measured there; half of the errors
    # go to one label (the bundled model files stories under "business")
    "bundled-like": Scenario((0.2, 0.2, 0.2, 0.2, 0.2), (0.95, 0.80, 0.68, 0.98, 0.83), 0.5),
    # skewed prevalence, a rare label, very accurate on the common ones
    "skewed": Scenario((0.5, 0.3, 0.15, 0.05), (0.97, 0.90, 0.85, 0.70), 0.0),
}


def _corpus(rng: np.random.Generator, sc: Scenario) -> tuple[np.ndarray, np.ndarray]:
    k = len(sc.prevalence)
    truth = rng.choice(k, size=N_ITEMS, p=sc.prevalence)
    right = rng.random(N_ITEMS) < np.asarray(sc.accuracy)[truth]
    other = (truth + rng.integers(1, k, size=N_ITEMS)) % k  # any other label, evenly
    to_first = (rng.random(N_ITEMS) < sc.attractor) & (truth != 0)
    pred = np.where(right, truth, np.where(to_first, 0, other))
    return truth, pred


def _simulate(scenario: Scenario, size: int) -> tuple[np.ndarray, int]:
    """Coverage of (accuracy, each label's prevalence) over SIMS audits of `size` items, and how many
    intervals had zero width."""
    k = len(scenario.prevalence)
    labels = tuple(f"l{j}" for j in range(k))
    covered = np.zeros(k + 1)  # accuracy, then each label's prevalence
    zero_width = 0
    for seed in range(SIMS):
        rng = np.random.default_rng(seed)
        truth, pred = _corpus(rng, scenario)
        populations = {labels[h]: int((pred == h).sum()) for h in range(k)}
        take = allocate(populations, fraction=size / N_ITEMS)
        idx = np.concatenate(
            [rng.choice(np.flatnonzero(pred == j), size=take[lab], replace=False) for j, lab in enumerate(labels)]
        )
        strata = [labels[p] for p in pred[idx]]
        acc, _ = M.stratified_proportion(truth[idx] == pred[idx], strata, populations=populations)
        prev = M.ppi_prevalence(
            [labels[p] for p in pred],
            [labels[t] for t in truth[idx]],
            strata,
            audit_strata=strata,
            populations=populations,
            labels=labels,
        )
        intervals = [acc] + [p.classical for p in prev]
        true_values = [np.mean(truth == pred)] + [np.mean(truth == j) for j in range(k)]
        covered += [e.low <= v <= e.high for e, v in zip(intervals, true_values, strict=True)]
        zero_width += sum(e.high - e.low <= 0 for e in intervals)
        assert all(e.low <= e.value <= e.high for e in intervals)
    return covered / SIMS, zero_width


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_audit_intervals_cover_the_truth_at_small_sizes(name: str) -> None:
    scenario = SCENARIOS[name]
    rows = []
    for size in SIZES:
        cov, zero = _simulate(scenario, size)
        rows.append((size, cov, zero))
        print(
            f"\n{name:12s} audit of {size:2d} ({100 * size / N_ITEMS:.0f}%): coverage accuracy {cov[0]:.3f}, "
            f"prevalence " + " ".join(f"{c:.3f}" for c in cov[1:]) + f"; zero-width intervals: {zero}",
            end="",
        )
    for size, cov, zero in rows:
        assert zero == 0, (name, size)
        assert cov.min() >= MIN_COVERAGE, (name, size, cov.round(3).tolist())
    assert len(rows[0][1]) == len(scenario.prevalence) + 1
