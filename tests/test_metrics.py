"""Known-answer tests for labeler.evaluate.metrics: simulated annotators whose confusion matrix and calibration are
set in advance, so the true values follow from the simulation's parameters; the estimates must recover
them within their intervals, and the intervals must cover at about their nominal rate."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from labeler.evaluate import metrics as M
from labeler.humans import decide

LABELS = ("major", "middle", "minor")
PRIOR = np.array([0.6, 0.3, 0.1])
# P(LLM label = column | true label = row): the LLM sends 10% of "major" and "middle" items to "minor"
CONFUSION = np.array(
    [
        [0.85, 0.05, 0.10],
        [0.05, 0.85, 0.10],
        [0.00, 0.05, 0.95],
    ]
)


def population_truth() -> dict[str, np.ndarray | float]:
    """The values the estimators should recover, from PRIOR and CONFUSION alone."""
    joint = PRIOR[:, None] * CONFUSION  # P(true = row, pred = column)
    pred_share = joint.sum(axis=0)
    recall = np.diag(CONFUSION)
    precision = np.diag(joint) / pred_share
    f1 = 2 * precision * recall / (precision + recall)
    accuracy = np.trace(joint)
    chance = (PRIOR * pred_share).sum()
    return {
        "over_prediction": pred_share / PRIOR,  # minor: (0.06 + 0.03 + 0.095) / 0.1 = 1.85
        "f1": f1,
        "f1_macro": float(f1.mean()),
        "accuracy": float(accuracy),
        "kappa": float((accuracy - chance) / (1 - chance)),
    }


def simulate(n: int, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    truth = rng.choice(3, size=n, p=PRIOR)
    pred = (rng.random(n)[:, None] > np.cumsum(CONFUSION[truth], axis=1)).sum(axis=1)
    return [LABELS[t] for t in truth], [LABELS[p] for p in pred]


# --- agreement ---------------------------------------------------------------------------------------------


def test_vectorised_confusion_stats_agree_with_sklearn() -> None:
    rng = np.random.default_rng(5)
    t, p = simulate(400, rng)
    p[:7] = [None] * 7  # failed items: "no label", always wrong
    a = M.agreement(t, p, labels=LABELS, n_boot=50)
    point = M.confusion_stats(np.array(a.confusion))
    codes_t, codes_p = M.encode(t, LABELS), M.encode(p, LABELS)
    assert point["accuracy"] == pytest.approx(skm.accuracy_score(codes_t, codes_p)) == a.accuracy.value
    for avg in ("macro", "micro", "weighted"):
        expected = skm.f1_score(codes_t, codes_p, labels=[0, 1, 2], average=avg)
        assert point[f"f1_{avg}"] == pytest.approx(expected) == getattr(a, f"f1_{avg}").value
    assert point["kappa"] == pytest.approx(skm.cohen_kappa_score(codes_t, codes_p)) == pytest.approx(a.kappa.value)
    prec, rec, _, support = skm.precision_recall_fscore_support(codes_t, codes_p, labels=[0, 1, 2])
    np.testing.assert_allclose(point["precision"], prec)
    np.testing.assert_allclose(point["recall"], rec)
    assert [c.support for c in a.per_class] == support.tolist()
    assert sum(row[3] for row in a.confusion) == 7 and a.confusion[3] == (0, 0, 0, 0)


def test_agreement_recovers_the_simulated_error_structure() -> None:
    truth = population_truth()
    t, p = simulate(3000, np.random.default_rng(11))
    a = M.agreement(t, p, labels=LABELS, n_boot=1000, seed=1)
    minor = a.per_class[2]
    assert minor.over_prediction.low <= truth["over_prediction"][2] <= minor.over_prediction.high
    assert minor.over_prediction.low > 1  # the interval excludes 1: a real over-prediction
    for j, c in enumerate(a.per_class):
        assert c.f1.low <= truth["f1"][j] <= c.f1.high, c.label
        assert c.over_prediction.low <= truth["over_prediction"][j] <= c.over_prediction.high, c.label
    assert a.f1_macro.low <= truth["f1_macro"] <= a.f1_macro.high
    assert a.accuracy.low <= truth["accuracy"] <= a.accuracy.high
    assert a.kappa.low <= truth["kappa"] <= a.kappa.high
    assert minor.false_positives.value == minor.predicted - a.confusion[2][2]


def test_bootstrap_intervals_cover_at_about_their_nominal_rate() -> None:
    truth = population_truth()
    rng = np.random.default_rng(2024)
    hits = {"accuracy": 0, "f1_macro": 0, "kappa": 0, "over_minor": 0, "f1_minor": 0}
    sims = 120
    for s in range(sims):
        t, p = simulate(300, rng)
        a = M.agreement(t, p, labels=LABELS, n_boot=300, seed=s)
        hits["accuracy"] += a.accuracy.low <= truth["accuracy"] <= a.accuracy.high
        hits["f1_macro"] += a.f1_macro.low <= truth["f1_macro"] <= a.f1_macro.high
        hits["kappa"] += a.kappa.low <= truth["kappa"] <= a.kappa.high
        o, f = a.per_class[2].over_prediction, a.per_class[2].f1
        hits["over_minor"] += o.low <= truth["over_prediction"][2] <= o.high
        hits["f1_minor"] += f.low <= truth["f1"][2] <= f.high
    for name, h in hits.items():
        assert 0.85 <= h / sims <= 0.99, (name, h / sims)


def test_confusion_pairs_rank_errors_and_carry_examples() -> None:
    t = ["a", "a", "a", "b", "b", "c"]
    p = ["b", "b", "a", "a", None, "c"]
    texts = [f"text {i}" for i in range(6)]
    pairs = M.confusion_pairs(t, p, labels=("a", "b", "c"), examples=texts, n_examples=1)
    assert [(x["true"], x["predicted"], x["count"]) for x in pairs] == [
        ("a", "b", 2),
        ("b", "a", 1),
        ("b", "(no label)", 1),
    ]
    assert pairs[0]["examples"] == ["text 0"] and pairs[0]["share_of_true"] == pytest.approx(2 / 3)


# --- several humans ----------------------------------------------------------------------------------------


def test_krippendorff_alpha_on_worked_examples() -> None:
    # By hand: units (a,a) (a,b) (b,b) (b,b), two coders each. Coincidences: o_aa = 2 (unit 1's two ordered
    # pairs, weight 1/(m−1) = 1), o_ab = o_ba = 1 (unit 2), o_bb = 4 (units 3, 4). n_a = 3, n_b = 5, n = 8.
    # alpha = 1 − (n − 1)·(o_ab + o_ba) / (2·n_a·n_b) = 1 − 7·2/30 = 8/15 ≈ 0.5333.
    small = [["a", "a"], ["a", "b"], ["b", "b"], ["b", "b"]]
    assert M.krippendorff_alpha(small, labels=("a", "b"), n_boot=10).value == pytest.approx(8 / 15)
    np.testing.assert_allclose(M.coincidence_matrix(small, labels=("a", "b")), [[2, 1], [1, 4]])
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability", nominal example: 4 coders, 12 units
    # with missing values; the paper gives alpha = 0.743.
    coders = [
        "1 2 3 3 2 1 4 1 2 . . .",
        "1 2 3 3 2 2 4 1 2 5 . 3",
        ". 3 3 3 2 3 4 2 2 5 1 .",
        "1 2 3 3 2 4 4 1 2 5 1 .",
    ]
    grid = [row.split() for row in coders]
    units = [[g[u] for g in grid if g[u] != "."] for u in range(12)]
    alpha = M.krippendorff_alpha(units, labels=("1", "2", "3", "4", "5"), n_boot=500)
    assert round(alpha.value, 3) == 0.743 and alpha.low < alpha.value < alpha.high
    # perfect agreement is 1; a single coder per unit is not pairable (undefined)
    assert M.krippendorff_alpha([["a", "a"], ["b", "b"]], labels=("a", "b"), n_boot=10).value == 1.0
    assert math.isnan(M.krippendorff_alpha([["a"], ["b"]], labels=("a", "b"), n_boot=10).value)


def _annotate(truth: np.ndarray, accuracy: float, rng: np.random.Generator) -> list[str]:
    """A label per item: right with probability `accuracy`, else one of the other labels at random."""
    wrong = (truth + rng.integers(1, 3, size=len(truth))) % 3
    return [LABELS[x] for x in np.where(rng.random(len(truth)) < accuracy, truth, wrong)]


def test_human_band_places_the_llm_inside_or_outside_the_human_disagreement() -> None:
    rng = np.random.default_rng(8)
    truth = rng.choice(3, size=600, p=PRIOR)
    humans = [
        dict(zip(("h1", "h2", "h3"), labs, strict=True))
        for labs in zip(*(_annotate(truth, 0.8, rng) for _ in range(3)), strict=True)
    ]
    like_a_human = M.human_band(humans, _annotate(truth, 0.8, rng), n_boot=500)
    assert like_a_human is not None and like_a_human.verdict == "inside"
    # an LLM with the humans' accuracy and error pattern is exchangeable with a held-out human: difference 0
    assert like_a_human.difference.low < 0 < like_a_human.difference.high
    worse = M.human_band(humans, _annotate(truth, 0.5, rng), n_boot=500)
    assert worse is not None and worse.verdict == "below"
    oracle = M.human_band(humans, [LABELS[x] for x in truth], n_boot=500)
    assert oracle is not None and oracle.verdict == "above"
    assert set(oracle.per_reviewer) == {"h1", "h2", "h3"} and oracle.n_items == 600 and oracle.n_judgements == 1800
    assert M.human_band([{"h1": "major"}], ["major"]) is None


# --- calibration -------------------------------------------------------------------------------------------


def test_calibration_recovers_a_known_overconfidence() -> None:
    # Confidence c ~ U(0.5, 1); the label is right with probability c − 0.15. Every bin is off by 0.15, so
    # ECE = 0.15 for any binning. Brier = E[(c − y)²] = E[1.3c − c²] − 0.15 = 1.3·0.75 − 7/12 − 0.15.
    rng = np.random.default_rng(3)
    n = 3000
    conf = rng.uniform(0.5, 1.0, n)
    right = rng.random(n) < conf - 0.15
    truth = rng.choice(3, size=n)
    pred = np.where(right, truth, (truth + 1) % 3)
    cal = M.calibration(
        [LABELS[x] for x in truth], [LABELS[x] for x in pred], confidence=conf, labels=LABELS, n_boot=500
    )
    assert cal.ece.low <= 0.15 <= cal.ece.high
    assert cal.brier.low <= 1.3 * 0.75 - 7 / 12 - 0.15 <= cal.brier.high
    # AUROC of c for correctness: densities ∝ (c − 0.15) for right and (1.15 − c) for wrong labels on [0.5, 1]
    grid = np.linspace(0.5, 1.0, 2001)
    f_pos, f_neg = grid - 0.15, 1.15 - grid
    f_pos, f_neg = f_pos / f_pos.sum(), f_neg / f_neg.sum()
    true_auroc = float((f_pos * np.cumsum(f_neg)).sum())
    assert cal.auroc is not None and cal.auroc.low <= true_auroc <= cal.auroc.high
    assert cal.mean_confidence - cal.accuracy == pytest.approx(0.15, abs=0.02)
    assert sum(b.count for b in cal.bins) == n and [b.count for b in cal.bins[:5]] == [0] * 5


def test_reliability_bins_ece_and_multiclass_brier_by_hand() -> None:
    # bin 0.6–0.7: two items at 0.65, one right → |0.5 − 0.65| · 2/4; bin 0.9–1.0 (1.0 included): 0.9 and 1.0,
    # both right → |1 − 0.95| · 2/4. ECE = 0.075 + 0.025 = 0.1.
    t = ["a", "a", "b", "b"]
    p = ["a", "b", "b", "b"]
    conf = [0.65, 0.65, 0.9, 1.0]
    probs = np.array([[0.65, 0.35], [0.35, 0.65], [0.1, 0.9], [0.0, 1.0]])
    cal = M.calibration(t, p, confidence=conf, labels=("a", "b"), probs=probs, n_boot=200)
    assert cal.ece.value == pytest.approx(0.1)
    assert cal.brier.value == pytest.approx(np.mean([(0.65 - 1) ** 2, 0.65**2, 0.1**2, 0.0]))
    # multiclass: item 2 has p = (0.35, 0.65) with y = a: 0.65² + 0.65²
    expected = np.mean([2 * 0.35**2, 2 * 0.65**2, 2 * 0.1**2, 0.0])
    assert cal.brier_multiclass is not None and cal.brier_multiclass.value == pytest.approx(expected)
    assert cal.bins[6].count == 2 and cal.bins[6].accuracy == 0.5 and cal.bins[9].confidence == pytest.approx(0.95)


def test_weighted_auroc_matches_sklearn_with_sample_weights() -> None:
    rng = np.random.default_rng(4)
    score = rng.integers(0, 6, 80) / 5  # many ties
    pos = rng.random(80) < score * 0.8
    w = rng.integers(0, 4, size=(3, 80)).astype(float)
    got = M._weighted_auroc(w, pos, score)
    for b in range(3):
        assert got[b] == pytest.approx(skm.roc_auc_score(pos, score, sample_weight=w[b]))


# --- audit estimates ---------------------------------------------------------------------------------------


def _corpus(rng: np.random.Generator, n: int = 4000) -> tuple[list[str], list[str], np.ndarray]:
    t, p = simulate(n, rng)
    strata = np.where(np.array(p) == "minor", "flagged", "rest")  # audit the LLM's "minor" items more densely
    return t, p, strata


def test_ppi_prevalence_and_stratified_accuracy_cover_the_corpus_truth() -> None:
    rng = np.random.default_rng(77)
    t, p, strata = _corpus(rng)
    n = len(t)
    true_share = np.array([np.mean([x == lab for x in t]) for lab in LABELS])
    correct = np.array(t) == np.array(p)
    populations = {h: int((strata == h).sum()) for h in ("flagged", "rest")}
    take = {"flagged": 80, "rest": 160}
    sims = 200
    cover = np.zeros(3)
    cover_acc = cover_dom = 0
    widths = []
    for _ in range(sims):
        idx = np.concatenate([rng.choice(np.flatnonzero(strata == h), size=k, replace=False) for h, k in take.items()])
        prev = M.ppi_prevalence(
            p,
            [t[i] for i in idx],
            [p[i] for i in idx],
            audit_strata=strata[idx].tolist(),
            populations=populations,
            labels=LABELS,
        )
        cover += [x.ppi.low <= s <= x.ppi.high for x, s in zip(prev, true_share, strict=True)]
        widths.append([(x.ppi.high - x.ppi.low, x.classical.high - x.classical.low) for x in prev])
        acc, _ = M.stratified_proportion(correct[idx], strata[idx], populations=populations)
        cover_acc += acc.low <= correct.mean() <= acc.high
        rest = strata[idx] == "rest"
        dom, _ = M.stratified_proportion(correct[idx], strata[idx], populations=populations, domain=rest)
        cover_dom += dom.low <= correct[strata == "rest"].mean() <= dom.high
    assert np.all((cover / sims >= 0.85) & (cover / sims <= 0.99)), cover / sims
    assert 0.85 <= cover_acc / sims <= 0.99 and 0.85 <= cover_dom / sims <= 0.99
    w = np.array(widths).mean(axis=0)
    # an 88%-accurate LLM makes the prediction-powered interval tighter; for "minor" the strata are the LLM's
    # own "minor" calls, so the correction is the classical estimate itself and the widths are equal
    assert np.all(w[:2, 0] < w[:2, 1]) and w[2, 0] == pytest.approx(w[2, 1])
    assert n == sum(populations.values())


def test_stratified_proportion_with_no_errors_still_has_an_interval() -> None:
    est, n_eff = M.stratified_proportion([1] * 20, ["s"] * 20, populations={"s": 1000})
    assert est.value == 1.0 and n_eff == 20
    assert est.high == 1.0 and est.low == pytest.approx(M.wilson_interval(1.0, 20)[0]) and est.low < 0.9


def test_sample_size_helpers_match_the_normal_approximation() -> None:
    # 1.96² · 0.9 · 0.1 / 0.03² = 384.1 → 385 items; with N = 1000: 384.1 / (1 + 383.1/1000) = 277.7 → 278
    assert M.audit_size_for_accuracy(expected_accuracy=0.9, half_width=0.03) == 385
    assert M.audit_size_for_accuracy(expected_accuracy=0.9, half_width=0.03, population=1000) == 278
    z = stats.norm.ppf(0.975)
    for p, h in [(0.8, 0.02), (0.95, 0.05), (0.5, 0.1)]:
        n = M.audit_size_for_accuracy(expected_accuracy=p, half_width=h)
        assert z * math.sqrt(p * (1 - p) / n) <= h < z * math.sqrt(p * (1 - p) / (n - 1))
    # prevalence 0.2 to ±0.02: 1.96² · 0.16 / 0.0004 = 1536.6 → 1537; with PPI and 5% disagreement: 480.2 → 481
    assert M.audit_size_for_prevalence(prevalence=0.2, half_width=0.02) == 1537
    assert M.audit_size_for_prevalence(prevalence=0.2, half_width=0.02, disagreement_rate=0.05) == 481


# --- cost and quality --------------------------------------------------------------------------------------


def test_budget_curve_lowest_confidence_first_vs_random() -> None:
    # 10 items, the 3 wrong ones have the lowest confidence: reviewing 3 fixes all of them
    correct = [False, False, False, True, True, True, True, True, True, True]
    conf = [0.1, 0.2, None, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99]
    c = M.budget_curve(correct, conf, budgets=[0, 1, 3, 10])
    assert c["lowest_first"] == pytest.approx([0.7, 0.8, 1.0, 1.0])
    assert c["random"] == pytest.approx([0.7, 0.73, 0.79, 1.0])  # 0.7 + b · 0.3/10
    assert c["random_low"][2] <= c["random"][2] <= c["random_high"][2]
    # all confidences tied: lowest-first is random routing in expectation
    tied = M.budget_curve(correct, [0.5] * 10, budgets=[0, 5, 10])
    assert tied["lowest_first"] == pytest.approx(tied["random"])


def test_cost_scenarios() -> None:
    rows = M.cost_scenarios(
        n_items=1000, llm_cost=2.0, price_per_label=0.1, review_budget=100, llm_accuracy=0.8, reviewed_accuracy=0.9
    )
    by = {r["scenario"]: r for r in rows}
    assert by["LLM + review"]["cost"] == pytest.approx(12.0) and by["all human"]["cost"] == pytest.approx(100.0)
    assert by["LLM only"]["cost_per_label"] == pytest.approx(0.002)
    assert by["LLM + review"]["cost_per_accuracy_point"] == pytest.approx(12.0 / 90)


def test_reference_label_majority_then_gold_then_earliest_answer() -> None:
    """The evaluation reference is labeler.humans' rule (the final dataset's too)."""
    assert decide({}).label is None
    assert decide({"r1": "tech", "r2": "tech", "gold": "sport"}).label == "tech"  # majority
    assert decide({"r1": "tech", "gold": "sport"}).label == "sport"  # tie: gold
    assert decide({"r1": "tech", "r2": "business"}).label == "tech"  # tie: the earliest answer


def _ece_by_definition(conf: np.ndarray, correct: np.ndarray, bins: int) -> float:
    """Σ_b |B_b|/n · |acc(B_b) − conf(B_b)| with a loop over equal-width bins, 1.0 in the last."""
    which = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            total += m.sum() / len(conf) * abs(correct[m].mean() - conf[m].mean())
    return total


def test_one_ece_for_calibration_and_evaluation() -> None:
    from labeler.confidence.reliability import ece, reliability_bins

    rng = np.random.default_rng(12)
    conf = rng.uniform(0, 1, 500)
    conf[:5] = [0.0, 1.0, 0.1, 0.3, 0.7]  # bin edges: 1.0 falls in the last bin
    correct = rng.random(500) < conf
    assert ece(conf, correct) == pytest.approx(_ece_by_definition(conf, correct, 10))
    assert ece(conf, correct, bins=15) == pytest.approx(_ece_by_definition(conf, correct, 15))
    assert ece([], []) == 0.0
    cal = M.calibration(["a"] * 500, np.where(correct, "a", "b").tolist(), confidence=conf, labels=("a", "b"))
    assert cal.ece.value == pytest.approx(ece(conf, correct))
    # weights: integer weights are repeated items; (B, n) weights give B values at once
    w = rng.integers(0, 4, size=(3, 500)).astype(float)
    many = ece(conf, correct, weights=w)
    for b in range(3):
        rep = np.repeat(np.arange(500), w[b].astype(int))
        assert many[b] == pytest.approx(ece(conf[rep], correct[rep]))
    bins = reliability_bins(conf, correct)
    assert sum(b.count for b in bins) == 500 and bins[-1].high == 1.0


def test_wilson_interval_matches_scipy_at_integer_n() -> None:
    for k, n in [(0, 15), (3, 15), (15, 15), (7, 30), (29, 30), (40, 75)]:
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert M.wilson_interval(k / n, n) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_krippendorff_alpha_matches_the_krippendorff_package() -> None:
    kd = pytest.importorskip("krippendorff")
    rng = np.random.default_rng(9)
    data = rng.integers(0, 4, size=(3, 200)).astype(float)
    data[:, :120] = data[0, :120]  # some agreement
    data[2, rng.random(200) < 0.4] = np.nan
    units = [[str(int(x)) for x in data[:, u] if not np.isnan(x)] for u in range(200)]
    ours = M.krippendorff_alpha(units, labels=("0", "1", "2", "3"), n_boot=10).value
    theirs = kd.alpha(reliability_data=data, level_of_measurement="nominal", value_domain=[0, 1, 2, 3])
    assert ours == pytest.approx(theirs)


def test_a_small_audit_that_saw_no_error_still_has_real_intervals() -> None:
    # the case: 15 audit items, 3 per stratum, strata = the LLM's labels; every audited item agrees
    labels = ("a", "b", "c", "d", "e")
    populations = dict.fromkeys(labels, 300)
    strata = [lab for lab in labels for _ in range(3)]
    pred_all = [lab for lab in labels for _ in range(300)]
    prev = M.ppi_prevalence(pred_all, strata, strata, audit_strata=strata, populations=populations, labels=labels)
    for p in prev:
        assert p.classical.value == pytest.approx(0.2)
        assert p.classical.low < 0.12 and p.classical.high > 0.3  # 3 items per stratum say little
        # one LLM label per stratum: the prediction-powered estimate is the stratified one
        assert (p.ppi.value, p.ppi.low, p.ppi.high) == pytest.approx(
            (p.classical.value, p.classical.low, p.classical.high)
        )
    acc, n_eff = M.stratified_proportion([1] * 15, strata, populations=populations)
    assert acc.value == 1.0 and acc.low < 0.85 and n_eff == pytest.approx(15)


def test_sample_sizes_from_a_pilot_without_errors_are_not_one_item() -> None:
    # a pilot of 15 audited items, all right: plan at the lower end of the Wilson interval, not at p = 1
    assert M.audit_size_for_accuracy(expected_accuracy=1.0, half_width=0.05) > 1  # p(1 − p) = 0: plan p = 1/2
    lo = M.wilson_interval(1.0, 15)[0]
    assert M.conservative_share(1.0, 15) == pytest.approx(lo)
    assert M.audit_size_for_accuracy(expected_accuracy=1.0, half_width=0.05, pilot_n=15) == math.ceil(
        stats.norm.ppf(0.975) ** 2 * lo * (1 - lo) / 0.05**2 - 1e-9
    )
    assert M.conservative_share(0.6, 15) == 0.5  # the interval holds 1/2
    # no disagreement seen on 15 items: plan with the upper end of its interval, not with 0
    n = M.audit_size_for_prevalence(prevalence=0.2, half_width=0.02, disagreement_rate=0.0, pilot_n=15)
    assert n > 1000
    assert M.audit_size_for_prevalence(prevalence=0.2, half_width=0.02, disagreement_rate=0.0) > 1


def test_human_band_item_weights_count_as_repeated_items() -> None:
    rng = np.random.default_rng(21)
    truth = rng.choice(3, size=80, p=PRIOR)
    humans = [
        dict(zip(("h1", "h2"), labs, strict=True))
        for labs in zip(*(_annotate(truth, 0.8, rng) for _ in range(2)), strict=True)
    ]
    llm = _annotate(truth, 0.7, rng)
    w = rng.integers(1, 4, size=80)
    weighted = M.human_band(humans, llm, weights=w.astype(float), n_boot=20)
    rep = np.repeat(np.arange(80), w)
    repeated = M.human_band([humans[i] for i in rep], [llm[i] for i in rep], n_boot=20)
    assert weighted is not None and repeated is not None
    for f in ("human_loo", "llm_vs_others", "difference", "llm_vs_majority"):
        assert getattr(weighted, f).value == pytest.approx(getattr(repeated, f).value)
