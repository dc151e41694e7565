"""Ensemble agreement: known-answer maths, votes with ties, combine_item, and the combined table of a run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from fakes import write_task

from labeler.confidence.ensemble import (
    MemberView,
    combine_item,
    disagreement,
    entropy,
    js_divergence,
    majority_vote,
    mean_pairwise_js,
    vote_share,
    weighted_vote,
)
from labeler.confidence.run import combine_run, needs_combine
from labeler.config import TaskConfig, load_config
from labeler.inputs import Row
from labeler.store import RunStore
from labeler.types import Item, ItemResult

LABELS = ("business", "sport", "tech")


# --- maths -------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [2, 3, 7])
def test_entropy_of_uniform_is_ln_k_and_normalises_to_one(k: int) -> None:
    assert entropy([1 / k] * k) == pytest.approx(math.log(k))
    assert entropy([1 / k] * k, normalized=True) == pytest.approx(1.0)


def test_entropy_of_one_hot_is_zero() -> None:
    assert entropy([0.0, 1.0, 0.0]) == 0.0
    assert entropy([0.0, 1.0, 0.0], normalized=True) == 0.0


def test_entropy_of_a_two_point_distribution() -> None:
    p = 0.2
    assert entropy([p, 1 - p]) == pytest.approx(-(p * math.log(p) + (1 - p) * math.log(1 - p)))


def test_entropy_rejects_what_is_not_a_distribution() -> None:
    with pytest.raises(ValueError, match="distribution"):
        entropy([0.5, -0.5])


def test_js_of_identical_is_zero_and_of_disjoint_one_hots_is_one() -> None:
    p = [0.2, 0.5, 0.3]
    assert js_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    assert js_divergence([1, 0, 0], [0, 0, 1]) == pytest.approx(1.0)


def test_js_known_value_and_symmetry() -> None:
    # JS = H(m) - (H(p) + H(q)) / 2 in bits, with m = [0.75, 0.25], H(p) = 0, H(q) = 1
    expected = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)) - 0.5
    assert js_divergence([1, 0], [0.5, 0.5]) == pytest.approx(expected)
    assert js_divergence([0.5, 0.5], [1, 0]) == pytest.approx(expected)


def test_mean_pairwise_js() -> None:
    a, b = [1.0, 0.0], [0.0, 1.0]
    assert mean_pairwise_js([a, a, b]) == pytest.approx(2 / 3)  # pairs: (a,a)=0, (a,b)=1, (a,b)=1
    assert mean_pairwise_js([a]) == 0.0
    assert mean_pairwise_js([]) == 0.0


def test_vote_share_ignores_missing_votes() -> None:
    assert vote_share(["a", "a", "b", None], "a") == pytest.approx(2 / 3)
    assert vote_share([None, None], "a") == 0.0


# --- votes -------------------------------------------------------------------------------------
def test_majority_vote_takes_the_most_votes() -> None:
    dists = [{"a": 0.55, "b": 0.45}, {"a": 0.55, "b": 0.45}, {"a": 0.0, "b": 1.0}]
    assert majority_vote(["a", "a", "b"], dists, labels=("a", "b")) == "a"


def test_weighted_vote_sums_probabilities() -> None:
    # the same members: two lukewarm votes for a (1.1 in all) lose to one sure vote for b (1.9 in all)
    dists = [{"a": 0.55, "b": 0.45}, {"a": 0.55, "b": 0.45}, {"a": 0.0, "b": 1.0}]
    assert weighted_vote(dists, labels=("a", "b")) == "b"


def test_majority_tie_goes_to_higher_summed_probability() -> None:
    dists = [{"a": 0.6, "b": 0.4}, {"a": 0.1, "b": 0.9}]
    assert majority_vote(["a", "b"], dists, labels=("a", "b")) == "b"


def test_full_ties_go_to_label_order_not_alphabet() -> None:
    dists = [{"a": 0.7, "b": 0.3}, {"a": 0.3, "b": 0.7}]
    assert majority_vote(["a", "b"], dists, labels=("b", "a")) == "b"
    assert majority_vote(["a", "b"], dists, labels=("a", "b")) == "a"
    # 0.1 + 0.2 != 0.3 in floating point: still a tie
    assert weighted_vote([{"a": 0.1, "b": 0.3}, {"a": 0.2, "b": 0.0}], labels=("b", "a")) == "b"
    assert weighted_vote([{"a": 0.1, "b": 0.3}, {"a": 0.2, "b": 0.0}], labels=("a", "b")) == "a"


def test_votes_with_no_voter() -> None:
    assert majority_vote([None, None], [], labels=("a", "b")) is None
    assert weighted_vote([], labels=("a", "b")) is None


def test_disagreement_thresholds() -> None:
    assert disagreement(0.5, 0.0, min_vote_share=0.67, max_divergence=0.2)
    assert disagreement(1.0, 0.3, min_vote_share=0.67, max_divergence=0.2)
    assert not disagreement(1.0, 0.1, min_vote_share=0.67, max_divergence=0.2)


# --- one item ----------------------------------------------------------------------------------
def view(label: str | None, dist: dict[str, float] | None = None, method: str = "logprob") -> MemberView:
    return MemberView(label=label, distributions={} if dist is None else {method: dist})


def test_combine_item_with_a_failed_member() -> None:
    members = {
        "m1": view("sport", {"business": 0.1, "sport": 0.8, "tech": 0.1}),
        "m2": view("sport", {"business": 0.0, "sport": 0.6, "tech": 0.4}),
        "m3": view(None),
    }
    c = combine_item(members, labels=LABELS, method_order=("logprob",), combine="majority")
    assert c.label == "sport"
    assert c.confidence == pytest.approx(0.7)
    assert dict(c.distribution) == pytest.approx({"business": 0.05, "sport": 0.7, "tech": 0.25})
    assert c.vote_share == 1.0
    assert c.divergence == pytest.approx(js_divergence([0.1, 0.8, 0.1], [0.0, 0.6, 0.4]))
    assert c.entropy == pytest.approx(entropy([0.05, 0.7, 0.25]) / math.log(3))
    assert dict(c.member_labels) == {"m1": "sport", "m2": "sport", "m3": None}
    assert not c.disagree  # divergence is below 0.2


def test_combine_item_flags_split_votes() -> None:
    members = {
        "m1": view("sport", {"business": 0.0, "sport": 1.0, "tech": 0.0}),
        "m2": view("tech", {"business": 0.0, "sport": 0.0, "tech": 1.0}),
    }
    c = combine_item(members, labels=LABELS, method_order=("logprob",), combine="weighted")
    assert c.label == "sport"  # summed probabilities tie; sport comes first in the label order
    assert c.vote_share == 0.5
    assert c.divergence == pytest.approx(1.0)
    assert c.disagree


def test_combine_item_uses_the_first_method_a_member_has() -> None:
    members = {
        "m1": MemberView(
            "tech",
            {"verbalized": {"business": 0.5, "sport": 0.0, "tech": 0.5}, "logprob": {"tech": 0.9, "sport": 0.1}},
        ),
    }
    c = combine_item(members, labels=LABELS, method_order=("logprob", "verbalized"), combine="weighted")
    assert c.confidence == pytest.approx(0.9)
    c = combine_item(members, labels=LABELS, method_order=("consistency", "verbalized"), combine="majority")
    assert c.confidence == pytest.approx(0.5)


def test_member_without_distribution_votes_with_its_confidence_or_one_hot() -> None:
    stated = combine_item(
        {"m": MemberView("tech", {}, confidence=0.8)}, labels=LABELS, method_order=("logprob",), combine="weighted"
    )
    assert dict(stated.distribution) == pytest.approx({"business": 0.1, "sport": 0.1, "tech": 0.8})
    bare = combine_item({"m": MemberView("tech")}, labels=LABELS, method_order=("logprob",), combine="weighted")
    assert bare.confidence == 1.0
    assert bare.entropy == 0.0


def test_combine_item_with_no_voter() -> None:
    c = combine_item({"m1": view(None), "m2": view(None)}, labels=LABELS, method_order=("logprob",), combine="majority")
    assert c.label is None
    assert c.confidence is None
    assert not c.disagree
    assert dict(c.member_labels) == {"m1": None, "m2": None}


def test_combine_item_rejects_unknown_combine() -> None:
    with pytest.raises(ValueError, match="combine"):
        combine_item({}, labels=LABELS, method_order=(), combine="mean")


# --- the run -----------------------------------------------------------------------------------
def make_task(root: Path, *, combine: str = "majority") -> TaskConfig:
    cfg = write_task(
        root,
        labels=LABELS,
        members=[{"name": "m2"}, {"name": "m3"}],
        sections={"confidence": {"combine": combine}},
    )
    return load_config(cfg, env={})


def make_store(root: Path, task: TaskConfig, ids: list[str], gold: dict[str, str] | None = None) -> RunStore:
    manifest = {
        "run_id": "test",
        "labels": list(task.label_names),
        "members": [{"name": m.name, "template_hash": ""} for m in task.members],
        "config_path": str(task.path),
        "config": task.raw,
    }
    store = RunStore.create(root / "run", manifest)
    rows = [Row(item=Item(id=i, text=f"item {i}", row=n), gold=(gold or {}).get(i)) for n, i in enumerate(ids, 1)]
    store.ingest(rows, members=[m.name for m in task.members])
    return store


def result(item_id: str, member: str, label: str | None, dist: dict[str, float] | None = None) -> ItemResult:
    if label is None:
        return ItemResult(item_id=item_id, member=member, status="failed", reason="unparseable")
    return ItemResult(
        item_id=item_id,
        member=member,
        status="labeled",
        label=label,
        confidence=None if dist is None else dist.get(label),
        distributions={} if dist is None else {"logprob": dist},
    )


def test_combine_run_writes_one_row_per_item(tmp_path: Path) -> None:
    task = make_task(tmp_path)
    store = make_store(tmp_path, task, ["i1", "i2", "i3"])
    sure_sport = {"business": 0.0, "sport": 1.0, "tech": 0.0}
    sure_tech = {"business": 0.0, "sport": 0.0, "tech": 1.0}
    for m in ("default", "m2", "m3"):
        store.put_result(result("i1", m, "sport", sure_sport))
    store.put_result(result("i2", "default", "sport", sure_sport))
    store.put_result(result("i2", "m2", "tech", sure_tech))
    store.put_result(result("i2", "m3", "tech", sure_tech))
    for m in ("default", "m2", "m3"):
        store.put_result(result("i3", m, None))
    assert needs_combine(store)

    assert combine_run(store, task) == 3
    rows = {r.item_id: r for r in store.combined_rows()}
    assert set(rows) == {"i1", "i2", "i3"}
    assert rows["i1"].label == "sport"
    assert rows["i1"].vote_share == 1.0
    assert rows["i1"].disagree is False
    assert rows["i2"].label == "tech"
    assert rows["i2"].vote_share == pytest.approx(2 / 3)
    assert rows["i2"].divergence == pytest.approx(2 / 3)  # pairs: (sport, tech) twice = 1, (tech, tech) = 0
    assert rows["i2"].disagree is True
    assert rows["i2"].member_labels == {"default": "sport", "m2": "tech", "m3": "tech"}
    assert rows["i2"].distribution == pytest.approx({"business": 0.0, "sport": 1 / 3, "tech": 2 / 3})
    assert rows["i3"].label is None
    assert rows["i3"].calibrated is None
    assert not needs_combine(store)

    # a new result makes the rows stale; combining again replaces, never duplicates
    store.put_result(result("i3", "default", "business", {"business": 0.9, "sport": 0.05, "tech": 0.05}))
    assert needs_combine(store)
    assert combine_run(store, task) == 3
    again = {r.item_id: r for r in store.combined_rows()}
    assert len(again) == 3
    assert again["i3"].label == "business"
    store.close()


def test_combine_run_weighted_follows_the_config(tmp_path: Path) -> None:
    task = make_task(tmp_path, combine="weighted")
    store = make_store(tmp_path, task, ["i1"])
    lukewarm = {"business": 0.5, "sport": 0.0, "tech": 0.5}
    store.put_result(result("i1", "default", "business", lukewarm))
    store.put_result(result("i1", "m2", "business", lukewarm))
    store.put_result(result("i1", "m3", "tech", {"business": 0.0, "sport": 0.0, "tech": 1.0}))
    combine_run(store, task)
    assert [r.label for r in store.combined_rows()] == ["tech"]
    store.close()
