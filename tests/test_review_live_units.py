"""The live sync's pieces without a server and without sockets: payloads (tasks, predictions per member,
records), the blind-audit rule, gold mixing, the pull bookkeeping (latest answer, deletions, ground truth,
gold answers kept out of the reviews), the quality-gate maths, and push/pull through a scripted Label
Studio (httpx2.MockTransport): token refresh, project reuse, only new tasks imported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
from live_runs import make_run

from labeler.errors import ReviewError
from labeler.review.live_argilla import live_records, live_settings, pulled_from_records
from labeler.review.live_common import (
    Pulled,
    credentials,
    gold_count,
    keep_latest,
    pick_gold,
    plan_pull,
    push_order,
    reviewer_quality,
)
from labeler.review.live_labelstudio import live_tasks, pulled_from_export
from labeler.review.live_sync import pull_run, push_run
from labeler.store import RunStore
from labeler.store.rows import QueueEntry, Review

LABELS = ("business", "sport", "tech")


def entry(i: str, rank: int, *, audit: bool = False, members: dict[str, str | None] | None = None) -> QueueEntry:
    reasons = ("audit",) if audit else ("low_confidence",)
    members = members or {"default": "sport"}
    return QueueEntry(i, rank, reasons, 1.0, audit, "sport", 0.4289999, None, None, members, f"text {i}")


# --- payloads -------------------------------------------------------------------------------------
def test_tasks_carry_text_and_item_id_only_and_a_prediction_per_member() -> None:
    entries = [entry("a", 1, members={"m1": "sport", "m2": "tech"}), entry("b", 2, audit=True)]
    tasks = live_tasks(entries, agent="labeler/r1/model", suggest=frozenset({"a", "b"}))
    assert [t["data"] for t in tasks] == [{"text": "text a", "item_id": "a"}, {"text": "text b", "item_id": "b"}]
    versions = {p["model_version"]: p["result"][0]["value"]["choices"] for p in tasks[0]["predictions"]}
    assert versions == {"labeler/r1/model/m1": ["sport"], "labeler/r1/model/m2": ["tech"]}
    assert [p["model_version"] for p in tasks[1]["predictions"]] == ["labeler/r1/model"]
    assert tasks[1]["predictions"][0]["score"] == 0.429  # rounded, not 0.4289999


def test_blind_audit_shows_no_suggestion_anywhere_and_shuffles(tmp_path: Path) -> None:
    entries = [entry(f"i{k}", k + 1, audit=k % 4 == 0) for k in range(12)]
    gold = [entry("g1", 0)]
    blind = push_order(entries, gold, blind=True, salt="r1")
    assert sorted(e.item_id for e in blind) == sorted([*(e.item_id for e in entries), "g1"])
    assert [e.rank for e in blind if e.item_id != "g1"] != sorted(e.rank for e in entries)
    assert push_order(entries, gold, blind=True, salt="r1") == blind  # the same run: the same order
    tasks = live_tasks(blind, agent="x", suggest=frozenset())
    assert all("predictions" not in t and set(t["data"]) == {"text", "item_id"} for t in tasks)
    records = live_records(blind, agent="x", suggest=frozenset())
    assert all(r["metadata"] == {} and r["suggestions"] == {} for r in records)
    ranked = push_order(entries, gold, blind=False, salt="r1")
    assert [e.rank for e in ranked if e.item_id != "g1"] == list(range(1, 13))


@pytest.mark.parametrize("blind", [False, True])
def test_gold_is_spread_uniformly_through_the_queue_over_many_salts(blind: bool) -> None:
    """Gold is picked by the smallest salted hash; placing it by the same hash put it first (tasks 1-4)."""
    entries = [entry(f"i{k}", k + 1) for k in range(40)]
    pool = {f"g{k}": "sport" for k in range(200)}
    positions = []  # each gold item's place in the pushed order, as a share of the order's length
    for n in range(400):
        salt = f"run{n}"
        picked = pick_gold(pool, (e.item_id for e in entries), n=4, salt=salt)
        order = [e.item_id for e in push_order(entries, [entry(g, 0) for g in picked], blind=blind, salt=salt)]
        positions += [order.index(g) / (len(order) - 1) for g in picked]
    quarters = [sum(int(min(p, 0.999) * 4) == q for p in positions) / len(positions) for q in range(4)]
    assert all(0.2 < share < 0.3 for share in quarters), quarters  # uniform: a quarter in each quarter
    assert 0.45 < sum(positions) / len(positions) < 0.55


def test_argilla_settings_have_overlap_and_no_metadata() -> None:
    s = live_settings(LABELS, ("ambiguous",), guidelines="g", overlap=3)
    assert s["distribution"] == {"strategy": "overlap", "min_submitted": 3}
    assert s["metadata"] == []
    records = live_records([entry("a", 1)], agent="labeler/r1/m (x)", suggest=frozenset({"a"}))
    assert records[0]["metadata"] == {} and records[0]["suggestions"]["label"]["value"] == "sport"


def test_gold_share_and_pick() -> None:
    assert gold_count(18, 0.1) == 2 and gold_count(18, 0.0) == 0 and gold_count(9, 0.5) == 9
    with pytest.raises(ReviewError, match="gold-share"):
        gold_count(10, 1.0)
    gold = {f"g{k}": "sport" for k in range(10)}
    picked = pick_gold(gold, ["g1", "g2"], n=3, salt="r1")
    assert len(picked) == 3 and not {"g1", "g2"} & set(picked)
    assert picked == pick_gold(gold, ["g1", "g2"], n=3, salt="r1")


def test_credentials_come_from_the_environment_and_errors_name_the_variable() -> None:
    assert credentials("labelstudio", None, {"LABEL_STUDIO_URL": "http://h/", "LABEL_STUDIO_API_KEY": "k"}) == (
        "http://h",
        "k",
    )
    with pytest.raises(ReviewError, match="LABEL_STUDIO_API_KEY"):
        credentials("labelstudio", "http://h", {})
    with pytest.raises(ReviewError, match="ARGILLA_API_URL"):
        credentials("argilla", None, {"ARGILLA_API_KEY": "k"})


# --- pull bookkeeping -----------------------------------------------------------------------------
def p(key: str, item: str, user: str, label: str, updated: str = "2026-01-01", **kw: Any) -> Pulled:
    return Pulled(key, item, user, label, updated=updated, **kw)


def test_keep_latest_prefers_adjudication_then_time_then_id() -> None:
    kept, dropped = keep_latest(
        [
            p("1", "a", "u", "sport", "t1"),
            p("2", "a", "u", "tech", "t2"),  # later
            p("3", "b", "u", "tech", "t9"),
            p("4", "b", "u", "sport", "t1", adjudication=True),  # ground truth wins
            p("5", "c", "u", "tech", "t1"),
            p("6", "c", "u", "sport", "t1"),  # same time: the larger id
        ]
    )
    assert {k: v.key for k, v in kept.items()} == {("a", "u"): "2", ("b", "u"): "4", ("c", "u"): "6"}
    assert dropped == 3


def test_plan_pull_adds_changes_removes_and_keeps_gold_answers_out() -> None:
    existing = {
        "a": [Review("a", "u1", "sport", None, None, "labelstudio")],
        "b": [Review("b", "u1", "tech", None, None, "labelstudio")],
        "c": [Review("c", "u1", "tech", None, None, "csv")],  # another source: never touched
        "z": [Review("z", "u1", "tech", None, None, "labelstudio")],  # not pushed to this project
    }
    pulled = [
        p("1", "a", "u1", "SPORT"),  # unchanged (case-insensitive)
        p("2", "b", "u1", "sport", correction_reason="Ambiguous"),  # changed
        p("3", "a", "u2", "tech", adjudication=True),  # added, an adjudication
        p("4", "g", "u1", "tech"),  # gold item: to the gate only
        p("5", "x", "u1", "tech"),  # not ours: ignored
    ]
    plan = plan_pull(
        existing, pulled, source="labelstudio", items=["a", "b", "c", "d"], gold_items=["g"], labels=LABELS,
        reasons=("ambiguous",),
    )  # fmt: skip
    assert plan.put == (
        Review("b", "u1", "sport", "ambiguous", None, "labelstudio"),
        Review("a", "u2", "tech", None, None, "labelstudio", True),
    )
    assert (plan.added, plan.changed, plan.unchanged) == (1, 1, 1)
    assert plan.remove == ()
    assert plan.answers == {"a": {"u1": "sport"}, "b": {"u1": "sport"}, "g": {"u1": "tech"}}
    assert plan.adjudicated == {"a": "tech"} and plan.gold_answered == 1
    gone = plan_pull(existing, [pulled[0]], source="labelstudio", items=["a", "b", "c"], labels=LABELS)
    assert gone.remove == (("b", "u1"),)  # deleted in the tool: removed; c (csv) and z (other scope) stay
    with pytest.raises(ReviewError, match="label 'spam' is not one of"):
        plan_pull({}, [p("9", "a", "u1", "spam")], source="labelstudio", items=["a"], labels=LABELS)


def test_labelstudio_export_reading_skips_cancelled_and_marks_ground_truth() -> None:
    def ann(i: int, user: Any, label: str, **kw: Any) -> dict[str, Any]:
        res = [{"from_name": "label", "type": "choices", "value": {"choices": [label]}}]
        res.append({"from_name": "note", "type": "textarea", "value": {"text": ["n1"]}})
        return {"id": i, "completed_by": user, "result": res, "updated_at": f"t{i}", **kw}

    anns = [ann(1, 3, "sport"), ann(2, {"id": 4}, "tech", ground_truth=True), ann(3, 5, "tech", was_cancelled=True)]
    tasks = [{"data": {"item_id": "a"}, "annotations": anns}, {"data": {"text": "no id"}, "annotations": anns}]
    got = pulled_from_export(tasks)
    assert [(x.key, x.reviewer, x.label, x.note, x.adjudication) for x in got] == [
        ("1", "3", "sport", "n1", False),
        ("2", "4", "tech", "n1", True),
    ]


def test_argilla_reading_counts_submitted_responses_only() -> None:
    def resp(user: str, status: str, label: str) -> dict[str, Any]:
        return {"user_id": user, "status": status, "values": {"label": {"value": label}, "note": {"value": "n"}}}

    responses = [
        resp("u1", "submitted", "sport"),
        resp("u2", "draft", "tech"),
        resp("u3", "discarded", "tech"),
        resp("u4", "submitted", "tech"),
    ]
    records = [{"id": "r1", "external_id": "a", "responses": responses}]
    got = pulled_from_records(records, adjudicators={"u4"})
    assert [(x.item_id, x.reviewer, x.label, x.adjudication) for x in got] == [
        ("a", "u1", "sport", False),
        ("a", "u4", "tech", True),
    ]


# --- quality gates ------------------------------------------------------------------------------
def test_reviewer_quality_on_gold_and_overlaps() -> None:
    answers = {
        "g1": {"ann": "sport", "bob": "tech"},
        "g2": {"ann": "tech", "bob": "tech"},
        "x1": {"ann": "sport", "bob": "sport", "cy": "sport"},
        "x2": {"ann": "tech", "bob": "sport", "cy": "sport"},  # ann outvoted
        "x3": {"ann": "tech", "bob": "sport"},  # a pair that disagrees: each counts against the other
        "x4": {"ann": "tech", "bob": "tech"},  # adjudicated otherwise: both wrong
        "x5": {"cy": "tech"},  # no overlap
    }
    q = reviewer_quality(
        answers, gold={"g1": "sport", "g2": "tech"}, adjudicated={"x4": "sport"}, min_accuracy=0.6, names={"bob": "b@x"}
    )
    by = {r.reviewer: r for r in q}
    assert (by["ann"].gold_n, by["ann"].gold_correct, by["ann"].overlap_n, by["ann"].overlap_agree) == (2, 2, 4, 1)
    assert (by["bob"].gold_accuracy, by["bob"].overlap_agreement) == (0.5, 1 / 3)  # x2 is a tie for him: skipped
    assert (by["cy"].gold_accuracy, by["cy"].overlap_agreement) == (None, 1.0)
    assert by["bob"].name == "b@x"
    assert {r.reviewer for r in q if r.flagged} == {"ann", "bob"}


# --- push and pull through a scripted Label Studio ------------------------------------------------
class FakeLabelStudio:
    """The few REST endpoints push/pull use, in memory; every request is recorded."""

    REFRESH = "h.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.s"  # {"token_type": "refresh"}

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.projects: dict[int, dict[str, Any]] = {}
        self.tasks: list[dict[str, Any]] = []
        self.expired_once = True

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content) if request.content else None
        path, auth = request.url.path, request.headers.get("Authorization")
        self.calls.append((request.method, path, body))
        if path == "/api/token/refresh":
            assert body == {"refresh": self.REFRESH}
            return httpx2.Response(200, json={"access": f"acc{len(self.calls)}"})
        if not (auth or "").startswith("Bearer acc"):
            return httpx2.Response(401, json={"detail": "no"})
        if self.expired_once and path == "/api/projects" and request.method == "GET":
            self.expired_once = False
            return httpx2.Response(401, json={"detail": "token expired"})
        if path == "/api/projects" and request.method == "GET":
            title = request.url.params["title"]
            return httpx2.Response(200, json={"results": [p for p in self.projects.values() if title in p["title"]]})
        if path == "/api/projects" and request.method == "POST":
            pid = len(self.projects) + 1
            self.projects[pid] = {"id": pid, **body}
            return httpx2.Response(201, json=self.projects[pid])
        if path.startswith("/api/projects/") and request.method == "PATCH":
            pid = int(path.split("/")[3])
            self.projects[pid].update(body)
            return httpx2.Response(200, json=self.projects[pid])
        if path == "/api/tasks":
            return httpx2.Response(200, json={"tasks": [{"id": k + 1, **t} for k, t in enumerate(self.tasks)]})
        if path.endswith("/import"):
            self.tasks += body
            return httpx2.Response(201, json={"task_count": len(body)})
        if path.endswith("/export"):
            return httpx2.Response(200, json=self.tasks)
        if path == "/api/users/":
            return httpx2.Response(200, json=[{"id": 7, "email": "ann@x"}, {"id": 8, "email": "bob@x"}])
        return httpx2.Response(404, json={"detail": path})


def test_push_and_pull_through_a_scripted_label_studio(tmp_path: Path) -> None:
    run_dir, truth = make_run(tmp_path)
    fake = FakeLabelStudio()
    env = {"LABEL_STUDIO_URL": "http://ls.test", "LABEL_STUDIO_API_KEY": fake.REFRESH}
    t = httpx2.MockTransport(fake)
    s = push_run(run_dir, tool="labelstudio", overlap=2, gold_share=0.1, env=env, transport=t)
    assert s.created and s.new == s.queue + s.gold and s.gold == 2
    assert fake.projects[1]["maximum_annotations"] == 2 and fake.projects[1]["title"] == "news review r1"
    assert all(set(task["data"]) == {"text", "item_id"} for task in fake.tasks)
    again = push_run(run_dir, tool="labelstudio", overlap=2, gold_share=0.1, env=env, transport=t)
    assert not again.created and again.new == 0 and again.already == s.new
    for task in fake.tasks:
        item = task["data"]["item_id"]
        res = [{"from_name": "label", "value": {"choices": [truth[item]]}}]
        task["annotations"] = [{"id": 1, "completed_by": 7, "updated_at": "t1", "result": res}]
    got = pull_run(run_dir, tool="labelstudio", env=env, transport=t)
    assert got.plan.added == s.queue and got.plan.gold_answered == s.gold
    assert got.reviewers == {"7": "ann@x"}
    assert [(q.reviewer, q.gold_accuracy, q.flagged) for q in got.quality] == [("7", 1.0, False)]
    store = RunStore.open(run_dir)
    meta = json.loads(store.get_meta("labelstudio_sync") or "{}")
    reviews = store.reviews()
    store.close()
    assert fake.REFRESH not in json.dumps(meta)
    entry = meta["projects"]["http://ls.test 1"]
    assert len(entry["pushed"]) == s.queue and len(entry["gold"]) == 2 and entry["users"]["7"] == "ann@x"
    assert len(entry["seen"]) == s.queue + s.gold and "last_pull" in entry
    assert sum(len(v) for v in reviews.values()) == s.queue
    assert not set(entry["gold"]) & set(reviews)


def test_blind_push_sends_no_prediction_and_no_rank_order(tmp_path: Path) -> None:
    run_dir, _ = make_run(tmp_path)
    fake = FakeLabelStudio()
    env = {"LABEL_STUDIO_URL": "http://ls.test", "LABEL_STUDIO_API_KEY": fake.REFRESH}
    s = push_run(run_dir, tool="labelstudio", blind_audit=True, env=env, transport=httpx2.MockTransport(fake))
    assert s.blind and s.suggested == 0 and fake.tasks
    assert all(set(t) == {"data"} and set(t["data"]) == {"text", "item_id"} for t in fake.tasks)
    assert fake.projects[1]["show_collab_predictions"] is False
    store = RunStore.open(run_dir)
    ranks = {e.item_id: e.rank for e in store.queue()}
    store.close()
    pushed = [ranks[t["data"]["item_id"]] for t in fake.tasks]
    assert pushed != sorted(pushed)


def test_a_refused_token_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    run_dir, _ = make_run(tmp_path)

    def refuse(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(401, json={"detail": "Token is blacklisted"})

    env = {"LABEL_STUDIO_URL": "http://ls.test", "LABEL_STUDIO_API_KEY": FakeLabelStudio.REFRESH}
    with pytest.raises(ReviewError, match="set LABEL_STUDIO_API_KEY") as err:
        push_run(run_dir, tool="labelstudio", env=env, transport=httpx2.MockTransport(refuse))
    assert "\n" not in str(err.value)
    with pytest.raises(ReviewError, match="was not pushed"):
        pull_run(run_dir, tool="labelstudio", env=env, transport=httpx2.MockTransport(refuse))


def test_an_argilla_sdk_error_becomes_one_line_naming_the_fix() -> None:
    from labeler.review.live_argilla import sdk_errors

    class ForbiddenError(Exception):  # the SDK's, raised for an annotator's key
        pass

    forbidden = r"failed to pull dataset 'd' \(ForbiddenError\); the key's role.*owner"
    with pytest.raises(ReviewError, match=forbidden), sdk_errors("http://a", "pull dataset 'd'"):
        raise ForbiddenError("403 Forbidden")
    with pytest.raises(ReviewError, match=r"^no dataset$"), sdk_errors("http://a", "pull"):
        raise ReviewError("no dataset")  # our own one-line errors pass unchanged
