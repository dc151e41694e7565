"""Live active learning through the review queue: `labeler route RUN_DIR --strategy margin --batch N` routes as
before and adds N items picked by a student trained on the human labels so far (reason active_learning, not
audit items). Checked: the picks' flags, the test split and the queue left out, the audit sample and every
audit-based estimate unchanged, the budget rule, the exports, `study next --queue` and the command line.
A scripted in-process model (no sockets); the run is built once and copied for each test."""

from __future__ import annotations

import asyncio
import csv
import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from test_router import population
from test_study_run import _make_run

from labeler.cli import main
from labeler.config import ReviewConfig
from labeler.evaluate.gather import gather
from labeler.evaluate.measure import build_metrics
from labeler.review.queue_export import export_queue
from labeler.review.router import (
    REASONS,
    ActivePicks,
    Candidate,
    Plan,
    Rules,
    active_room,
    add_picks,
    format_plan,
    plan,
    route_run,
)
from labeler.store import RunStore
from labeler.store.rows import QueueEntry, Review, Stratum
from labeler.study.data import uniform
from labeler.study.live import next_batch

HUMAN = 60  # the corpus's first 60 items carry a gold label: the human labels so far


@pytest.fixture(scope="module")
def base_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("route_active")
    with pytest.MonkeyPatch.context() as mp:
        yield asyncio.run(_make_run(root, mp, gold_for=HUMAN))


@pytest.fixture
def run(base_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(base_run, tmp_path / "run"))


def route(run_dir: Path, **kw: Any) -> tuple[Plan, ReviewConfig]:
    """Route with a 5% audit drawn with seed 3: the same draw every time."""
    return route_run(run_dir, audit_fraction=0.05, seed=3, **kw)


def tables(run_dir: Path) -> tuple[list[QueueEntry], list[Stratum], dict[str, str]]:
    store = RunStore.open(run_dir)
    try:
        return store.queue(), store.audit_strata(), store.gold_labels()
    finally:
        store.close()


def audit_of(queue: list[QueueEntry]) -> dict[str, tuple[float | None, str | None]]:
    """The audit sample: item id -> (inclusion probability, stratum)."""
    return {e.item_id: (e.inclusion_prob, e.stratum) for e in queue if e.audit}


def picks_of(queue: list[QueueEntry]) -> list[QueueEntry]:
    return [e for e in queue if "active_learning" in e.reasons]


# --- the pure parts --------------------------------------------------------------------------------------
def test_the_reason_sits_between_disagreement_and_audit() -> None:
    assert REASONS == ("failed", "low_confidence", "disagreement", "dropped_spans", "active_learning", "audit")


def test_reserve_takes_room_from_the_flagged_items_never_from_the_audit() -> None:
    cands = population()  # 1000 items; a 10% audit is 100 items, about 60% of items below 0.6
    rules = Rules(threshold=0.6)
    full = plan(cands, rules=rules, audit_fraction=0.1, seed=1, cap=150)
    kept = plan(cands, rules=rules, audit_fraction=0.1, seed=1, cap=150, reserve=20)
    assert audit_of(list(kept.queue)) == audit_of(list(full.queue))  # the same draw
    assert sum(not e.audit for e in full.queue) == 50 and sum(not e.audit for e in kept.queue) == 30
    assert active_room(kept, 20) == 20
    tight = plan(cands, rules=rules, audit_fraction=0.1, seed=1, cap=110, reserve=20)
    assert len(tight.queue) == 100 and active_room(tight, 20) == 10  # what the audit leaves
    over = plan(cands, rules=rules, audit_fraction=0.1, seed=1, cap=50, reserve=20)
    assert len(over.queue) == 100 and active_room(over, 20) == 0  # the audit alone is over the budget
    free = plan(cands, rules=rules, audit_fraction=0.1, seed=1, cap=None, reserve=20)
    assert (
        active_room(free, 20) == 20
        and free.queue == plan(cands, rules=rules, audit_fraction=0.1, seed=1, cap=None).queue
    )


def test_add_picks_queues_them_after_the_routed_items_and_never_as_audit() -> None:
    cands = [
        Candidate("a", "x", confidence=0.1),
        Candidate("b", "x", confidence=0.9),
        Candidate("c", "y", confidence=0.3),
        Candidate("d", "y", confidence=0.8),
    ]
    rules = Rules(threshold=0.5)
    p = plan(cands, rules=rules, audit_fraction=0.0, seed=0, cap=1)  # routes a; the budget leaves out c
    assert [e.item_id for e in p.queue] == ["a"] and (p.flagged, p.dropped) == (2, 1)
    info = ActivePicks("margin", "margin", 2, 2, 2, 10, 3)
    q = add_picks(p, ["d", "c"], cands, rules=rules, info=info)
    assert [(e.item_id, e.rank, e.reasons) for e in q.queue] == [
        ("a", 1, ("low_confidence",)),
        ("d", 2, ("active_learning",)),
        ("c", 3, ("low_confidence", "active_learning")),  # every reason that applies
    ]
    assert all(not e.audit and e.inclusion_prob is None for e in q.queue[1:])
    assert q.dropped == 0 and q.active == info and q.strata == p.strata
    for bad in (["a"], ["b", "b"], ["zz"]):  # queued already, twice, not a candidate
        with pytest.raises(Exception, match="new, distinct candidates"):
            add_picks(p, bad, cands, rules=rules)


def test_format_plan_names_the_student_and_the_budget() -> None:
    e = QueueEntry("a", 1, ("active_learning",), 0.1, False, "x", 0.9)
    base = Plan((e,), (Stratum("x", 10, 0),), 0, None, 0, 0)

    def text(cap: int | None, *active: Any) -> str:
        return format_plan(replace(base, cap=cap, active=ActivePicks(*active)), ReviewConfig())

    got = text(None, "margin", "margin", 20, 20, 20, 37, 150)
    assert "1 active_learning" in got
    assert "active learning: student trained on 37 human labels; 20 picked by margin, from 150 candidates" in got
    got = text(None, "qbc", "random", 5, 5, 5, 0, 99, True)
    assert "5 picked by random (cold start: fewer than two labels seen, so not by qbc)" in got
    assert "the budget (12 items) left room for 3 of the 20 asked" in text(12, "margin", "margin", 20, 3, 3, 37, 150)
    assert "only 2 of the 20 asked could be picked" in text(None, "margin", "margin", 20, 20, 2, 37, 2)
    assert "left no room for the 20 picks asked" in text(2, "margin", "margin", 20, 0, 0, 0, 0)


# --- a run -------------------------------------------------------------------------------------------------
def test_picks_are_active_learning_items_not_audit_items(run: Path) -> None:
    routed, _ = route(run)
    p, _ = route(run, strategy="margin", batch=12)
    queue, _, gold = tables(run)
    picks = picks_of(queue)
    assert len(picks) == 12 and p.active is not None and p.active.picked == 12
    assert all(e.reasons[-1] == "active_learning" and not e.audit and e.inclusion_prob is None for e in picks)
    assert all("audit" not in e.reasons for e in picks)
    # without a budget the routed part is the plan without a strategy, item for item; the picks come after it
    assert queue[: len(routed.queue)] == [
        QueueEntry(**{**vars(e), "text": q.text, "elements": q.elements})  # both read back from the store
        for e, q in zip(routed.queue, queue, strict=False)
    ]
    assert [e.rank for e in picks] == list(range(len(routed.queue) + 1, len(routed.queue) + 13))
    ids = [e.item_id for e in queue]
    assert len(ids) == len(set(ids))  # no pick duplicates a routed or audited item
    assert not {e.item_id for e in picks} & set(gold)  # nor one a human has labeled
    assert p.active.trained_on == sum(uniform(0, i) >= 0.3 for i in gold)  # the study's default split


@pytest.mark.parametrize("split_seed", [0, 1, 7, 42])
def test_no_pick_is_ever_in_the_test_split(run: Path, split_seed: int) -> None:
    (run / "study").mkdir(exist_ok=True)
    doc = {"seed": split_seed, "test_fraction": 0.4, "test_ids": []}
    (run / "study" / "split.json").write_text(json.dumps(doc), encoding="utf-8")
    for strategy in ("margin", "random", "coreset"):
        route_run(run, audit_fraction=0.05, seed=split_seed, strategy=strategy, batch=25)
        picks = picks_of(tables(run)[0])
        assert len(picks) == 25
        assert all(uniform(split_seed, e.item_id) >= 0.4 for e in picks), strategy


def test_the_audit_sample_is_the_same_with_and_without_a_strategy(run: Path) -> None:
    for budget in ({}, {"max_items": 40}, {"max_dollars": 1.0}):
        route(run, **budget)
        queue, strata, _ = tables(run)
        route(run, **budget, strategy="entropy", batch=8)
        queue2, strata2, _ = tables(run)
        assert audit_of(queue2) == audit_of(queue) and strata2 == strata
        assert audit_of(queue) and all(prob for prob, _ in audit_of(queue).values())


def test_the_picks_count_against_the_budget_and_the_audit_is_never_cut(run: Path) -> None:
    free, _ = route(run)
    audit = sum(e.audit for e in free.queue)
    flagged = [e for e in free.queue if not e.audit]
    assert audit == 12 and len(flagged) > 30  # 5% of 240; the hard items sit below the 0.6 threshold

    cap = audit + 10 + 5  # room for the 10 picks and the 5 most doubtful flagged items
    p, _ = route(run, max_items=cap, strategy="margin", batch=10)
    queue = tables(run)[0]
    assert len(queue) == cap and sum(e.audit for e in queue) == audit and len(picks_of(queue)) == 10
    assert [e.item_id for e in queue if not e.audit and e not in picks_of(queue)] == [
        e.item_id for e in flagged[:5]
    ]  # the flagged items kept are the most doubtful, in the same order

    p, review = route(run, max_items=audit + 3, strategy="margin", batch=10)
    queue = tables(run)[0]
    assert len(queue) == audit + 3 and len(picks_of(queue)) == 3 and sum(e.audit for e in queue) == audit
    assert "left room for 3 of the 10 asked" in format_plan(p, review)

    p, review = route(run, max_items=5, strategy="margin", batch=10)
    queue = tables(run)[0]
    assert len(queue) == audit and not picks_of(queue)  # the audit alone is over the budget: kept whole
    assert "left no room" in format_plan(p, review) and "exceeds the budget" in format_plan(p, review)


def test_eval_audit_figures_do_not_move_when_picks_are_queued(run: Path) -> None:
    route(run)
    queue, _, _ = tables(run)
    other = {"business": "sport", "sport": "tech", "tech": "business"}
    answers = [
        Review(e.item_id, "ann", str(e.llm_label) if e.rank % 3 else other[str(e.llm_label)], source="csv")
        for e in queue
        if e.audit
    ]
    store = RunStore.open(run)
    store.put_reviews(answers)
    store.close()

    # the estimates that rest on the random audit alone, and the final dataset's accuracy: picks waiting for
    # review were not chosen by the LLM's doubt, so they count as unseen items ("queue_size" and the cost
    # follow the queue, which grows by the picks)
    def audit_figures() -> dict[str, Any]:
        a = build_metrics(gather(run), n_boot=50, seed=0)["audit"]
        keys = ("audited", "audited_with_label", "strata", "llm_accuracy", "unseen_accuracy", "prevalence")
        return {k: a[k] for k in (*keys, "routed", "final_accuracy")}

    before = audit_figures()
    route(run, strategy="margin", batch=15)
    assert len(picks_of(tables(run)[0])) == 15
    after = audit_figures()
    assert after == before
    assert before["audited_with_label"] == before["audited"] == 12
    store = RunStore.open(run)
    assert {r.item_id for rs in store.reviews().values() for r in rs} == {a.item_id for a in answers}  # kept
    store.close()


def test_argilla_accepts_every_routing_reason() -> None:
    from labeler.review.argilla import ROUTING_REASONS

    assert ROUTING_REASONS == REASONS  # its terms property validates the values: a missing one is refused


def test_every_export_shows_the_reason(run: Path, tmp_path: Path) -> None:
    route(run, strategy="margin", batch=5)
    picked = {e.item_id for e in picks_of(tables(run)[0])}
    export_queue(run, tmp_path / "q.csv", "csv")
    rows = list(csv.DictReader((tmp_path / "q.csv").open(encoding="utf-8")))
    assert {r["id"] for r in rows if "active_learning" in r["reasons"].split(";")} == picked
    export_queue(run, tmp_path / "ls.json", "labelstudio")
    tasks = json.loads((tmp_path / "ls.json").read_text(encoding="utf-8"))
    assert {t["data"]["item_id"] for t in tasks if "active_learning" in t["data"]["reasons"]} == picked
    export_queue(run, tmp_path / "ar.json", "argilla")
    records = json.loads((tmp_path / "ar.json").read_text(encoding="utf-8"))
    assert {r["id"] for r in records if "active_learning" in r["metadata"]["reasons"]} == picked


# --- the command line ------------------------------------------------------------------------------------
def test_route_with_a_strategy_on_the_command_line(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["route", str(run), "--audit-fraction", "0.05", "--seed", "3", "--strategy", "margin", "--batch", "5"])
        == 0
    )
    out = capsys.readouterr().out
    _, _, gold = tables(run)
    trained = sum(uniform(0, i) >= 0.3 for i in gold)
    assert "5 active_learning" in out and "12 audit" in out
    assert f"student trained on {trained} human labels; 5 picked by margin" in out
    assert len(picks_of(tables(run)[0])) == 5


def test_an_unknown_strategy_is_one_line_naming_the_choices(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    route(run)
    before = tables(run)[0]
    assert main(["route", str(run), "--strategy", "marginal"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "unknown strategy 'marginal': choose from random, least_confidence, margin, entropy, qbc" in err
    assert tables(run)[0] == before  # nothing written
    assert main(["route", str(run), "--strategy", "margin", "--batch", "0"]) == 2
    assert "--batch must be at least 1" in capsys.readouterr().err


def test_study_next_queue_appends_to_the_current_queue(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    route(run, max_items=30)
    queue, strata, _ = tables(run)
    assert main(["study", "next", str(run), "--strategy", "margin", "--batch", "4", "--queue"]) == 0
    assert "queued 4 items (reason active_learning)" in capsys.readouterr().out
    queue2, strata2, _ = tables(run)
    assert queue2[: len(queue)] == queue and strata2 == strata  # the queue and the audit as they were
    added = queue2[len(queue) :]
    assert [e.rank for e in added] == [31, 32, 33, 34]
    assert all(e.reasons[-1] == "active_learning" and not e.audit and e.inclusion_prob is None for e in added)
    assert not {e.item_id for e in added} & {e.item_id for e in queue}


def test_a_team_runs_the_loop_through_the_review_queue(run: Path, tmp_path: Path) -> None:
    """Three rounds as a team would run them, all on the command line: route with a strategy, export the
    queue as CSV, fill in the true labels, import; each round's student is trained on every label so far,
    no item is picked twice, and the audit drawn in round one is the audit of every round."""
    from test_study_run import LABELS, N

    from labeler.study.synthetic import synthetic_texts

    _, y, _ = synthetic_texts(N, k=3, seed=5)
    store = RunStore.open(run)
    truth = {r.id: LABELS[y[int(r.text.split(":")[0].split()[1]) - 1]] for r in store.item_rows()}
    store.close()
    labeled = len(tables(run)[2])
    picked: list[str] = []
    audit: dict[str, tuple[float | None, str | None]] | None = None
    for n in range(3):
        argv = ["route", str(run), "--audit-fraction", "0.05", "--seed", "3", "--strategy", "margin", "--batch", "8"]
        assert main(argv) == 0
        queue = tables(run)[0]
        audit = audit if audit is not None else audit_of(queue)
        assert audit_of(queue) == audit
        new = [e.item_id for e in picks_of(queue)]
        assert len(new) == 8 and not set(new) & set(picked)
        picked += new
        out = tmp_path / f"round{n}.csv"
        assert main(["review", "export", str(run), "--format", "csv", "--out", str(out)]) == 0
        rows = list(csv.DictReader(out.open(encoding="utf-8")))
        for r in rows:
            r["human_label"], r["reviewer"] = truth[r["id"]], "ann"
        with out.open("w", encoding="utf-8", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        assert main(["review", "import", str(run), str(out)]) == 0
        store = RunStore.open(run)
        reviewed = {r.item_id for rs in store.reviews().values() for r in rs}
        store.close()
        assert set(picked) <= reviewed
    # the next student knows the gold labels plus every reviewed item outside the test split
    nb = next_batch(run, strategy="margin", batch=1)
    in_train = {i for i in set(tables(run)[2]) | reviewed if uniform(0, i) >= 0.3}
    assert nb.trained_on == len(in_train) > labeled * 0.7
