"""The cost/quality study on synthetic pools whose answers are known: the test split, the strategies, the
committee, the stopping rules, the scores and the equal-cost budget. No sockets, no model."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score

from labeler.study.classifiers import Fitted, featurize, make_factory
from labeler.study.data import NO_LABEL, Prices, StudyError, from_arrays, split_mask, stopping_set
from labeler.study.loop import (
    kappa,
    make_schedule,
    simulate,
    stop_budget,
    stop_plateau,
    stop_stable,
)
from labeler.study.metrics import Scorer, cost_per_point
from labeler.study.run import StudyOptions, run_study
from labeler.study.strategies import STRATEGIES, Query, committee_disagreement, pick
from labeler.study.synthetic import synthetic_study

LOGREG = make_factory("logreg")


def _prices(per_label: float = 0.1, llm: float = 1.0, review: int = 0) -> Prices:
    return Prices(per_label, llm, "test", 0, 0, review, None)


# --- the test split ------------------------------------------------------------------------------------------


def test_the_test_split_depends_only_on_id_and_seed_and_grows_monotonically() -> None:
    ids = [f"i{n}" for n in range(2000)]
    some = split_mask(ids, [n % 2 == 0 for n in range(2000)], fraction=0.3, seed=4)
    more = split_mask(ids, [True] * 2000, fraction=0.3, seed=4)
    assert (some <= more).all()  # more human labels never move a test item out of the test split
    assert 0.27 < more.mean() < 0.33
    assert not some[1::2].any()  # only items with a human label are test items
    assert (split_mask(list(reversed(ids)), [True] * 2000, fraction=0.3, seed=4)[::-1] == more).all()
    assert (split_mask(ids, [True] * 2000, fraction=0.3, seed=5) != more).any()


def test_no_strategy_and_no_fit_ever_touches_the_test_split() -> None:
    data = synthetic_study(300, seed=3)
    assert not set(data.ids) & set(data.test_ids)
    assert len(data.ids) + len(data.test_ids) == 300
    # the vocabulary is fitted on the pool only: a word that only test texts hold is not in it
    marked = [t + " onlyintest onlyintest" for t in data.test_texts]
    assert featurize(data.texts, marked).vocabulary == featurize(data.texts, data.test_texts).vocabulary
    # every student is fitted on pool rows: a spy factory sees at most the pool's rows, never more
    feats = featurize(data.texts, data.test_texts)
    seen: list[int] = []

    def spy() -> object:
        est = LOGREG()
        fit = est.fit

        def recording_fit(X: object, y: np.ndarray, sample_weight: object = None) -> object:
            assert X.shape[1] == feats.pool.shape[1]  # type: ignore[attr-defined]
            seen.append(len(y))
            return fit(X, y, sample_weight=sample_weight)

        est.fit = recording_fit  # type: ignore[method-assign]
        return est

    schedule = make_schedule(seed_size=10, batch=10, max_labels=60)
    q = np.flatnonzero(data.queryable)
    for strategy in STRATEGIES:
        t = simulate(
            strategy,
            features=feats,
            oracle=data.human,
            queryable=data.queryable,
            seed_set=q[:10],
            stop_idx=stopping_set(data.ids, size=50, seed=0),
            schedule=schedule,
            factory=spy,  # type: ignore[arg-type]
            k=3,
            seed=0,
            cv_folds=0,
        )
        # the labeled items are pool indices (the pool holds no test item), each once, all queryable
        assert len(set(t.order.tolist())) == len(t.order) == 60
        assert t.order.max() < len(data.ids) and data.queryable[t.order].all()
        assert t.test_pred.shape == (len(schedule.sizes), len(data.test_ids))
    assert seen and max(seen) <= len(data.ids)


def test_picks_stay_inside_the_candidates() -> None:
    data = synthetic_study(200, seed=1)
    feats = featurize(data.texts, data.test_texts)
    y = np.full(len(data.ids), NO_LABEL)
    y[:12] = data.human[:12]
    allowed = np.arange(50, 90)  # e.g. everything else is queued, audited or in the test split
    proba = Fitted(LOGREG().fit(feats.pool[:12], y[:12]), 3).proba(feats.pool)
    for strategy in STRATEGIES:
        rng = np.random.default_rng(0)
        q = Query(feats.pool, feats.pool_dense, y, allowed, proba, LOGREG, 3, rng)
        got = pick(strategy, q, 15)
        assert len(got.indices) == 15 and set(got.indices.tolist()) <= set(allowed.tolist()), strategy
        assert len(got.reasons) == 15


# --- strategies with known answers ---------------------------------------------------------------------------


def _labels_to_reach(strategy: str, seed: int, target: float) -> int:
    data = synthetic_study(700, k=3, hard_share=0.3, seed=seed, llm_skew=None)
    feats = featurize(data.texts, data.test_texts, seed=seed)
    schedule = make_schedule(seed_size=10, batch=10, max_labels=250)
    seeds = np.random.default_rng(seed).choice(np.flatnonzero(data.queryable), size=10, replace=False)
    t = simulate(
        strategy,
        features=feats,
        oracle=data.human,
        queryable=data.queryable,
        seed_set=seeds,
        stop_idx=np.arange(10),
        schedule=schedule,
        factory=LOGREG,
        k=3,
        seed=seed,
        cv_folds=0,
    )
    acc = (t.test_pred == data.test_human).mean(axis=1)
    hit = np.flatnonzero(acc >= target)
    return int(t.sizes[hit[0]]) if len(hit) else 10_000


def test_margin_sampling_reaches_the_target_with_fewer_labels_than_random() -> None:
    # hard items (30%) hold tied cue words and a decider word seen only in hard items: random sampling
    # meets them at their base rate, margin sampling seeks them out
    margin = [_labels_to_reach("margin", s, 0.97) for s in range(5)]
    random = [_labels_to_reach("random", s, 0.97) for s in range(5)]
    assert sum(m < r for m, r in zip(margin, random, strict=True)) >= 4, (margin, random)
    assert np.mean(margin) < 0.8 * np.mean(random), (margin, random)


def test_committee_disagreement_is_the_known_vote_entropy() -> None:
    a, b = [0.9, 0.1], [0.2, 0.8]
    # item 0: all three members agree; item 1: two against one
    probas = np.array([[a, a], [a, a], [a, b]], dtype=float)
    ve, kl = committee_disagreement(probas, 2)
    assert ve[0] == pytest.approx(0.0)
    assert ve[1] == pytest.approx(-(2 / 3) * math.log(2 / 3) - (1 / 3) * math.log(1 / 3))
    assert kl[0] == pytest.approx(0.0, abs=1e-9) and kl[1] > 0


class _Member:
    """A committee member that agrees with the others everywhere but on pool row `SPLIT`, where member i says i % 2."""

    SPLIT = 7
    made = 0

    def __init__(self) -> None:
        self.me = _Member.made
        _Member.made += 1
        self.classes_ = np.array([0, 1])

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: object = None) -> _Member:
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        rows = X[:, 0].astype(int)
        p = np.tile([0.8, 0.2], (len(rows), 1))
        p[rows == self.SPLIT] = [0.3, 0.7] if self.me % 2 else [0.7, 0.3]
        return p


def test_query_by_committee_picks_the_item_its_members_disagree_on() -> None:
    X = np.arange(30, dtype=float)[:, None]
    y = np.full(30, NO_LABEL)
    y[[0, 1, 2, 3]] = [0, 1, 0, 1]
    q = Query(X, X, y, np.arange(4, 30), None, _Member, 2, np.random.default_rng(0), committee=4)  # type: ignore[arg-type]
    got = pick("qbc", q, 1)
    assert got.indices.tolist() == [_Member.SPLIT]
    assert got.scores[0] == pytest.approx(math.log(2))  # 2 votes against 2


def test_coreset_picks_the_far_away_item_first() -> None:
    Z = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [5.0, 5.0], [0.2, 0.1]])
    y = np.array([0, NO_LABEL, NO_LABEL, NO_LABEL, NO_LABEL])
    q = Query(Z, Z, y, np.arange(1, 5), None, LOGREG, 2, np.random.default_rng(0))
    got = pick("coreset", q, 2)
    assert got.indices[0] == 3 and got.scores[0] == pytest.approx(math.hypot(5, 5))


# --- stopping rules, schedule, scores, costs -----------------------------------------------------------------


def test_schedule_holds_the_equal_cost_mark() -> None:
    assert make_schedule(seed_size=10, batch=10, max_labels=45, marks=[23, 99]).sizes == (10, 20, 23, 30, 40, 45)


def test_stopping_rules_on_known_series() -> None:
    same = np.array([[0, 1, 1, 0]] * 6)
    assert kappa(same[0], same[1]) == 1.0 and kappa(np.zeros(4), np.zeros(4)) == 1.0
    moving = np.array(
        [[0, 1, 1, 0], [1, 1, 1, 0], [0, 0, 1, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 1, 1, 0]]
    )
    assert stop_stable(same) == 3  # rounds 1, 2, 3 each agree with the one before
    assert stop_stable(moving) == 6
    assert stop_stable(moving[:4]) is None
    f1 = np.array([0.3, 0.5, 0.6, 0.7, 0.703, 0.706, 0.708])
    assert stop_plateau(f1) == 6  # 0.708 − 0.700 < 0.01 over the three rounds 4, 5, 6
    assert stop_plateau(np.array([np.nan, 0.5, 0.6, 0.7])) is None
    assert stop_budget(np.array([10, 20, 23, 30]), 23) == 2 and stop_budget(np.array([10, 20]), 99) == 1


def test_scores_agree_with_scikit_learn_and_paired_differences_of_equals_are_zero() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    p = np.where(rng.random(200) < 0.8, y, rng.integers(0, 3, 200))
    s = Scorer.make(y, 3, n_boot=300, seed=1)
    out = s.summary([p], ["a", "b", "c"])
    assert out["f1_macro"]["value"] == pytest.approx(f1_score(y, p, average="macro"))
    assert out["f1_macro"]["low"] < out["f1_macro"]["value"] < out["f1_macro"]["high"]
    for j, c in enumerate(out["per_class"]):
        assert c["over_prediction"]["value"] == pytest.approx((p == j).sum() / (y == j).sum())
    assert s.difference([p], [p]) == {"value": 0.0, "low": 0.0, "high": 0.0}
    assert cost_per_point(5.0, 0.5) == pytest.approx(0.1)


def test_human_arms_cost_the_same_as_llm_plus_review_within_one_label() -> None:
    data = synthetic_study(400, seed=2, price_per_label=0.13, llm_cost=1.0, review_labels=7)
    res = run_study(data, StudyOptions(repeats=1, batch=10, max_labels=60, n_boot=50, strategies=("random", "margin")))
    budget = res["equal_cost"]["dollars"]
    assert budget == pytest.approx(1.0 + 7 * 0.13)
    humans = [a for a in res["arms"] if a["key"] in ("human_random", "human_margin")]
    assert len(humans) == 2
    for a in humans:
        assert a["dollars"] <= budget + 1e-9 < a["dollars"] + 0.13
    assert res["equal_cost"]["labels"] in res["schedule"]
    llm = next(a for a in res["arms"] if a["key"] == "llm")
    assert llm["dollars"] == pytest.approx(1.0) and llm["training_labels"] == len(data.ids)
    # the simulated LLM files hard items under l0: its student over-predicts l0, and the interval says so
    assert llm["per_class"][0]["over_prediction"]["low"] > 1.0


def test_too_few_human_labels_is_a_one_line_error() -> None:
    with pytest.raises(StudyError, match="human label"):
        from_arrays(["a", "b", "c"], ["x", "y", "z"], ["l0", None, None], labels=["l0", "l1"], prices=_prices())
    with pytest.raises(StudyError, match="unknown strategy"):
        StudyOptions(strategies=("magic",)).check()


def test_the_balanced_student_gives_a_rare_class_its_due(capsys: pytest.CaptureFixture[str]) -> None:
    """Two overlapping classes, the rare one 10% of the training labels: class_weight="balanced" weighs it
    9x, which moves the boundary towards the common class, so the rare class is predicted more often and
    recalled better than by the plain student (same data, same C)."""
    from labeler.cli import main

    rng = np.random.default_rng(3)
    n_common, n_rare = 900, 100
    X = np.vstack([rng.normal(0.0, 1.0, (n_common, 2)), rng.normal(1.2, 1.0, (n_rare, 2))])
    y = np.array(["common"] * n_common + ["rare"] * n_rare)
    rare = y == "rare"
    said = {}
    for name in ("logreg", "logreg_balanced"):
        est = make_factory(name)().fit(X, y)
        said[name] = np.asarray(est.classes_)[est.predict_proba(X).argmax(1)]
    recall = {name: float(np.mean(p[rare] == "rare")) for name, p in said.items()}
    assert (said["logreg_balanced"] == "rare").sum() > 2 * (said["logreg"] == "rare").sum()
    assert recall["logreg_balanced"] > recall["logreg"] + 0.3
    with pytest.raises(SystemExit):
        main(["study", "--help"])
    assert "logreg_balanced" in capsys.readouterr().out
