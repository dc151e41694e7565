"""Routing: stratified audit (sizes, inclusion probabilities, seeds), reasons, priority, budget, queue tables."""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import pytest
from fakes import write_task

from labeler.cli.humans import register
from labeler.config import load_config
from labeler.inputs import Row
from labeler.record import ItemRecord, build_record
from labeler.review.router import (
    Candidate,
    Rules,
    allocate,
    audit_sample,
    budget_cap,
    candidate_from_record,
    plan,
    priority,
    reasons_for,
    route_run,
)
from labeler.store import RunStore
from labeler.store.rows import CombinedRow, ItemRows, ResultRow
from labeler.types import Item, ItemResult

LABELS = ("business", "sport", "tech")
SIZES = {"business": 600, "sport": 300, "tech": 100}


def population(seed: int = 0) -> list[Candidate]:
    """1000 labeled items: 600 business, 300 sport, 100 tech, confidences spread over [0, 1)."""
    rng = random.Random(seed)
    out = []
    for label, size in SIZES.items():
        for k in range(size):
            out.append(Candidate(f"{label}-{k:03d}", label, confidence=rng.random()))
    rng.shuffle(out)
    return out


# --- allocation and the audit draw ---------------------------------------------------------------------
def test_allocation_is_proportional() -> None:
    assert allocate(SIZES, fraction=0.1) == {"business": 60, "sport": 30, "tech": 10}
    assert allocate(SIZES, fraction=0.05) == {"business": 30, "sport": 15, "tech": 5}


def test_allocation_gives_every_non_empty_stratum_at_least_one() -> None:
    # n = round(0.05 × 1003) = 50: the big stratum gets all 50 by proportion, the tiny one is lifted to 1
    assert allocate({"big": 1000, "tiny": 3, "none": 0}, fraction=0.05) == {"big": 50, "tiny": 1, "none": 0}
    assert allocate({"a": 2, "b": 1}, fraction=0.9) == {"a": 2, "b": 1}  # never more than the stratum
    assert allocate(SIZES, fraction=0.0) == {"business": 0, "sport": 0, "tech": 0}


def test_allocation_largest_remainder_keeps_the_total() -> None:
    sizes = {"a": 333, "b": 333, "c": 334}
    got = allocate(sizes, fraction=0.1)  # quotas 33.3, 33.3, 33.4 → 33, 33, 34
    assert got == {"a": 33, "b": 33, "c": 34}
    assert sum(got.values()) == 100


def test_audit_sample_is_stratified_and_reproducible() -> None:
    items = [(c.item_id, str(c.label)) for c in population()]
    a = audit_sample(items, fraction=0.1, seed=7)
    stratum_of = dict(items)
    assert Counter(stratum_of[i] for i in a.item_ids) == {"business": 60, "sport": 30, "tech": 10}
    assert {s.name: (s.population, s.sampled) for s in a.strata} == {
        "business": (600, 60),
        "sport": (300, 30),
        "tech": (100, 10),
    }
    again = audit_sample(list(reversed(items)), fraction=0.1, seed=7)  # input order does not matter
    assert again.item_ids == a.item_ids
    other = audit_sample(items, fraction=0.1, seed=8)
    assert other.item_ids != a.item_ids
    assert len(other.item_ids) == len(a.item_ids) == 100


def test_audit_covers_high_confidence_items() -> None:
    cands = population()
    p = plan(cands, rules=Rules(threshold=0.5), audit_fraction=0.1, seed=1, cap=None)
    confident_audited = [r for r in p.queue if r.audit and r.confidence is not None and r.confidence >= 0.5]
    assert confident_audited  # about half the audit: drawn from all labeled items, not only doubtful ones
    assert all(r.reasons == ("audit",) for r in confident_audited)


def test_inclusion_probability_is_n_h_over_N_h() -> None:
    p = plan(population(), rules=Rules(threshold=0.0), audit_fraction=0.05, seed=3, cap=None)
    assert len(p.queue) == 50  # threshold 0: only the audit is queued
    for r in p.queue:
        assert r.audit
        assert r.inclusion_prob == pytest.approx({"business": 30 / 600, "sport": 15 / 300, "tech": 5 / 100}[r.stratum])


# --- reasons and priority ------------------------------------------------------------------------------
def test_reasons_handle_missing_ensemble_keys() -> None:
    rules = Rules(threshold=0.6, min_vote_share=0.67, max_divergence=0.2)
    assert reasons_for(Candidate("a", "x", confidence=0.9), rules) == ()
    assert reasons_for(Candidate("a", "x", confidence=0.5), rules) == ("low_confidence",)
    assert reasons_for(Candidate("a", "x", confidence=0.9, vote_share=0.5), rules) == ("disagreement",)
    assert reasons_for(Candidate("a", "x", confidence=0.9, vote_share=1.0, divergence=0.3), rules) == ("disagreement",)
    assert reasons_for(Candidate("a", "x", confidence=0.1, vote_share=0.34), rules) == (
        "low_confidence",
        "disagreement",
    )
    assert reasons_for(Candidate("a", None), rules) == ("failed",)
    assert reasons_for(Candidate("a", "x", confidence=None), rules) == ()


def test_priority_puts_failed_first_then_most_doubtful() -> None:
    assert priority(Candidate("f", None)) == 2.0
    assert priority(Candidate("a", "x", confidence=0.3)) == pytest.approx(0.7)
    assert priority(Candidate("a", "x", confidence=0.9, vote_share=0.4)) == pytest.approx(0.6)
    assert priority(Candidate("a", "x", confidence=0.95, divergence=0.5)) == pytest.approx(0.5)


def test_queue_is_ranked_by_priority_with_all_reasons() -> None:
    cands = [
        Candidate("c1", "sport", confidence=0.55),
        Candidate("c2", "sport", confidence=0.2),
        Candidate("f1", None),
        Candidate("c3", "tech", confidence=0.2),  # ties with c2: input order
        Candidate("c4", "tech", confidence=0.95, vote_share=0.5),
        Candidate("ok", "tech", confidence=0.99),
    ]
    p = plan(cands, rules=Rules(threshold=0.6), audit_fraction=0.0, seed=0, cap=None)
    assert [r.item_id for r in p.queue] == ["f1", "c2", "c3", "c4", "c1"]
    assert [r.rank for r in p.queue] == [1, 2, 3, 4, 5]
    by_id = {r.item_id: r for r in p.queue}
    assert by_id["f1"].reasons == ("failed",) and by_id["f1"].inclusion_prob is None
    assert by_id["c4"].reasons == ("disagreement",)
    # with an audit of everything, the doubtful items carry both reasons
    p_all = plan(cands, rules=Rules(threshold=0.6), audit_fraction=1.0, seed=0, cap=None)
    assert {r.item_id: r.reasons for r in p_all.queue}["c2"] == ("low_confidence", "audit")
    assert {r.item_id: r.reasons for r in p_all.queue}["ok"] == ("audit",)


# --- budget ------------------------------------------------------------------------------------------------
def test_budget_cap_by_items_and_dollars() -> None:
    assert budget_cap(max_items=None, max_dollars=None, price_per_label=0.1) is None
    assert budget_cap(max_items=40, max_dollars=None, price_per_label=0.1) == 40
    assert budget_cap(max_items=None, max_dollars=3.0, price_per_label=0.12) == 25
    assert budget_cap(max_items=10, max_dollars=3.0, price_per_label=0.12) == 10
    assert budget_cap(max_items=None, max_dollars=0.3, price_per_label=0.1) == 3  # no float rounding down to 2


@pytest.mark.parametrize("cap", [80, 25])  # 80: by items; 25 = $3.00 at $0.12 a label
def test_budget_keeps_the_audit_whole_and_cuts_the_rest_by_priority(cap: int) -> None:
    cands = population()
    p = plan(cands, rules=Rules(threshold=0.5), audit_fraction=0.02, seed=5, cap=cap)
    audited = [r for r in p.queue if r.audit]
    assert len(audited) == 20
    assert len(p.queue) == cap
    taken = {r.item_id for r in p.queue if not r.audit}
    doubtful = sorted(
        (
            c
            for c in cands
            if c.confidence is not None and c.confidence < 0.5 and c.item_id not in {r.item_id for r in audited}
        ),
        key=lambda c: -priority(c),
    )
    assert taken == {c.item_id for c in doubtful[: cap - 20]}
    assert p.flagged == len(doubtful) and p.dropped == len(doubtful) - (cap - 20)


def test_audit_larger_than_the_budget_is_kept_whole() -> None:
    p = plan(population(), rules=Rules(threshold=0.5), audit_fraction=0.05, seed=5, cap=10)
    assert len(p.queue) == 50 and all(r.audit for r in p.queue)


def test_failed_items_come_first_within_the_budget() -> None:
    cands = [Candidate(f"f{k}", None) for k in range(3)] + [Candidate(f"c{k}", "x", confidence=0.1) for k in range(5)]
    p = plan(cands, rules=Rules(), audit_fraction=0.0, seed=0, cap=4)
    assert [r.item_id for r in p.queue] == ["f0", "f1", "f2", "c0"]


# --- item records ----------------------------------------------------------------------------------------
def result(member: str, status: str, label: str | None, confidence: float | None) -> ResultRow:
    return ResultRow("a", member, status, label, confidence, {}, None, None, "m", 0, 0, 0.0, 1, False)


def record(
    members: Mapping[str, tuple[str, str | None, float | None]], combined: CombinedRow | None = None
) -> ItemRecord:
    """The ItemRecord of item "a" (labeler.record decides its label and confidence, not the router)."""
    results = {m: result(m, *v) for m, v in members.items()}
    rows = ItemRows(1, "a", "text", (), None, results, combined)
    return build_record(rows, member_order=list(members), template_hashes={})


def combined(label: str, confidence: float, calibrated: float | None = None) -> CombinedRow:
    return CombinedRow("a", label, confidence, {}, 0.5, 0.7, 0.3, True, {"m1": "x", "m2": "y"}, calibrated)


def test_candidate_prefers_calibrated_then_ensemble_confidence() -> None:
    base = record({"m1": ("labeled", "x", 0.9)})
    assert candidate_from_record(base) == Candidate("a", "x", 0.9, member_labels={"m1": "x"})
    two = {"m1": ("labeled", "x", 0.9), "m2": ("labeled", "y", 0.8)}
    c = candidate_from_record(record(two, combined("y", 0.55)))
    assert c is not None and (c.label, c.confidence, c.vote_share, c.divergence) == ("y", 0.55, 0.5, 0.3)
    assert c.member_labels == {"m1": "x", "m2": "y"}
    cal = candidate_from_record(record(two, combined("y", 0.55, calibrated=0.4)))
    assert cal is not None and cal.confidence == 0.4
    assert candidate_from_record(record(two, combined("y", 0.55, calibrated=None))) == c
    assert candidate_from_record(record({"m1": ("skipped", None, None)})) is None
    failed = candidate_from_record(record({"m1": ("failed", None, None)}))
    assert failed is not None and failed.label is None


# --- the run -------------------------------------------------------------------------------------------------
def make_run(root: Path, n: int = 200, *, routing: dict[str, object] | None = None) -> Path:
    cfg = write_task(
        root / "task",
        labels=LABELS,
        sections={
            "routing": {"audit_fraction": 0.05, "seed": 11, **(routing or {})},
            "review": {"price_per_label": 0.25},
        },
    )
    task = load_config(cfg, env={})
    run_dir = root / "run"
    manifest = {
        "run_id": "r1",
        "labels": list(LABELS),
        "members": [{"name": "default", "template_hash": "x"}],
        "config_path": str(cfg),
        "config": dict(task.raw),
    }
    store = RunStore.create(run_dir, manifest)
    rows = [Row(Item(f"i{k:03d}", f"text {k}", k + 1)) for k in range(n)]
    rows.append(Row(Item("empty", "", n + 1), skip="empty text"))
    store.ingest(rows, members=["default"])
    for k in range(n):
        if k % 50 == 7:
            store.put_result(ItemResult(f"i{k:03d}", "default", "failed", reason="unparseable"))
        else:
            conf = (k * 37 % 100) / 100  # 0.00 .. 0.99, each value twice
            store.put_result(ItemResult(f"i{k:03d}", "default", "labeled", label=LABELS[k % 3], confidence=conf))
    store.close()
    return run_dir


def read_tables(run_dir: Path) -> tuple[list[dict[str, object]], dict[str, tuple[int, int, int]]]:
    """The queue and the audit strata as the store reads them back (seed: the one column it does not expose)."""
    store = RunStore.open(run_dir)
    try:
        queue = [{**vars(e), "reasons": json.dumps(list(e.reasons))} for e in store.queue()]
        seeds = dict(store.conn.execute("SELECT stratum, seed FROM audit_strata").fetchall())
        strata = {s.name: (s.population, s.sampled, seeds[s.name]) for s in store.audit_strata()}
    finally:
        store.close()
    return queue, strata


def test_route_run_writes_queue_and_strata(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    p, _ = route_run(run_dir, max_items=30)
    queue, strata = read_tables(run_dir)
    # 196 labeled items (4 failed, 1 skipped): 66/65/65 by label; 5% → 10 = 4 + 3 + 3
    labeled = Counter(LABELS[k % 3] for k in range(200) if k % 50 != 7)
    assert {h: pop for h, (pop, _, _) in strata.items()} == dict(labeled)
    assert sum(n for _, n, _ in strata.values()) == round(0.05 * 196)
    assert {seed for _, _, seed in strata.values()} == {11}
    assert len(queue) == 30 == len(p.queue)
    assert [q["rank"] for q in queue] == list(range(1, 31))
    assert [q["item_id"] for q in queue[:4]] == ["i007", "i057", "i107", "i157"]  # the failed ones
    assert all(json.loads(str(q["reasons"])) == ["failed"] for q in queue[:4])
    assert "empty" not in {q["item_id"] for q in queue}
    for q in queue:
        if q["audit"]:
            pop, n, _ = strata[str(q["stratum"])]
            assert q["inclusion_prob"] == pytest.approx(n / pop)
        else:
            assert q["inclusion_prob"] is None
    priorities = [float(q["priority"]) for q in queue]  # type: ignore[arg-type]
    assert priorities == sorted(priorities, reverse=True)


def test_route_flags_override_config_and_rerun_replaces_queue(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, routing={"max_items": 5})
    route_run(run_dir)
    queue, _ = read_tables(run_dir)
    assert len(queue) == 10  # the audit (10) is kept whole even over a budget of 5
    route_run(run_dir, max_items=100, max_dollars=5.0, threshold=0.3, seed=12)  # $5 at $0.25 = 20 items
    queue2, strata2 = read_tables(run_dir)
    assert len(queue2) == 20
    assert {s for _, _, s in strata2.values()} == {12}
    non_audit = [q for q in queue2 if not q["audit"]]
    assert all(q["confidence"] is None or float(q["confidence"]) < 0.3 for q in non_audit)  # type: ignore[arg-type]
    route_run(run_dir, audit_fraction=0.0, threshold=0.0, max_items=100)
    queue3, _ = read_tables(run_dir)
    assert {q["item_id"] for q in queue3} == {"i007", "i057", "i107", "i157"}


def test_store_migrations_create_the_agreed_review_columns(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, n=3)
    store = RunStore.open(run_dir)  # opening again applies no migration twice
    try:
        cols = {
            t: [r[1] for r in store.conn.execute(f"PRAGMA table_info({t})")]
            for t in ("queue", "audit_strata", "reviews")
        }
    finally:
        store.close()
    assert cols["queue"][:8] == [
        "item_id",
        "rank",
        "reasons",
        "priority",
        "audit",
        "inclusion_prob",
        "stratum",
        "created",
    ]
    assert cols["audit_strata"] == ["stratum", "population", "sampled", "seed"]
    assert cols["reviews"][:7] == ["item_id", "reviewer", "label", "correction_reason", "note", "source", "imported_at"]


def test_register_adds_route() -> None:
    p = argparse.ArgumentParser()
    register(p.add_subparsers())
    args = p.parse_args(
        [
            "route",
            "runs/x",
            "--max-items",
            "5",
            "--max-dollars",
            "2.5",
            "--audit-fraction",
            "0.1",
            "--seed",
            "3",
            "--threshold",
            "0.7",
        ]
    )
    assert (args.max_items, args.max_dollars, args.audit_fraction, args.seed, args.threshold) == (5, 2.5, 0.1, 3, 0.7)
    assert args.fn.__name__ == "cmd_route"
