"""Aggregation with the live review sync, against a REAL Label Studio 1.23 server on 127.0.0.1
(tests/test_review_live_labelstudio.py's server fixture and venv): a routed run of one LLM member is pushed
with overlap 3, three Label Studio users annotate every task through the REST API with qualities known in
advance (careful: right 95% of the time; noisy: right 70%; constant: always `business`), `labeler review
pull` brings the answers back, `labeler review status --consensus dawid_skene` flags the constant reviewer
and only it, and `labeler export --consensus dawid_skene` beats `--consensus vote` against the truth. Then
`labeler route --more-reviews` and a second push raise the overlap of the picked tasks in the project, and
a fourth user is offered them by Label Studio's own labeling stream.

Run: `python -m pytest -m labelstudio tests/test_aggregate_live.py` (the last test, of `raise_overlap`
against a fake client, runs without the server)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import numpy as np
import pytest
from live_runs import labeler, ls_login
from test_review_live_labelstudio import ADMIN, ADMIN_PW, Server, add_user, annotate, api, result, server

from labeler.aggregate.status import review_status
from labeler.store import RunStore

__all__ = ["server"]  # the fixture, shared with test_review_live_labelstudio

LABELS = ("business", "sport", "tech")
N = 120
LLM_ACC = 0.8
# reviewer -> share of its answers that are right (None: always answers `business`)
REVIEWERS: dict[str, float | None] = {"constant": None, "careful": 0.95, "noisy": 0.7}
PASSWORD = "reviewer-secret-1"


def _wrong(label: str, rng: np.random.Generator) -> str:
    return str(rng.choice([x for x in LABELS if x != label]))


def make_llm_run(root: Path) -> tuple[Path, dict[str, str]]:
    """`N` items of known truth, one LLM member right `LLM_ACC` of the time at confidence 0.8, routed with
    a threshold above every confidence: every item is queued (no gold column: the consensus alone judges)."""
    from fakes import write_task

    from labeler.config import load_config
    from labeler.inputs import Row
    from labeler.review.router import route_run
    from labeler.types import Item, ItemResult

    rng = np.random.default_rng(7)
    cfg = write_task(
        root / "task",
        labels=LABELS,
        sections={"routing": {"low_confidence": 0.95, "audit_fraction": 0.0}, "aggregate": {"min_accuracy": 0.6}},
    )
    task = load_config(cfg, env={})
    manifest = {
        "run_id": "agg1",
        "labels": list(LABELS),
        "members": [{"name": "default", "template_hash": "x", "endpoint": {"model": "test-model"}}],
        "config_path": str(cfg),
        "config": dict(task.raw),
    }
    run_dir = root / "run"
    store = RunStore.create(run_dir, manifest)
    truth = {f"i{k:03d}": LABELS[k % 3] for k in range(N)}
    store.ingest([Row(Item(i, f"text {i}", k + 1)) for k, i in enumerate(truth)], members=["default"])
    for i, t in truth.items():
        lab = t if rng.random() < LLM_ACC else _wrong(t, rng)
        store.put_result(ItemResult(i, "default", "labeled", label=lab, confidence=0.8))
    store.close()
    route_run(run_dir)
    return run_dir, truth


def answers(truth: dict[str, str]) -> dict[str, dict[str, str]]:
    """reviewer -> item -> its answer, drawn once from the designed qualities (seeded)."""
    rng = np.random.default_rng(11)
    out: dict[str, dict[str, str]] = {}
    for r, acc in REVIEWERS.items():
        out[r] = {
            i: "business" if acc is None else (t if rng.random() < acc else _wrong(t, rng)) for i, t in truth.items()
        }
    return out


def accuracy(path: Path, truth: dict[str, str]) -> float:
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    assert {r["id"] for r in rows} == set(truth)
    return float(np.mean([r["label"] == truth[r["id"]] for r in rows]))


@dataclass(frozen=True)
class Users:
    url: str
    admin_token: str
    tokens: dict[str, str]  # careful, noisy, constant, dave -> refresh token
    ids: dict[str, str]  # name -> Label Studio user id

    def clients(self) -> dict[str, httpx2.Client]:
        """A client per reviewer with a fresh access token (they live 5 minutes)."""
        return {r: api(self.url, t) for r, t in self.tokens.items()}


@pytest.fixture(scope="module")
def users(server: Server) -> Users:
    """The admin's token (one per user and server: a second POST /api/token/ is a 409) and four reviewers."""
    admin_token = ls_login(server.url, ADMIN, ADMIN_PW)
    tokens = {}
    for r in (*REVIEWERS, "dave"):
        add_user(server, f"{r}@example.com", PASSWORD)
        tokens[r] = ls_login(server.url, f"{r}@example.com", PASSWORD)
    listed = {u["email"]: str(u["id"]) for u in api(server.url, admin_token).get("/api/users/").json()}
    return Users(server.url, admin_token, tokens, {r: listed[f"{r}@example.com"] for r in tokens})


@pytest.mark.labelstudio
def test_three_label_studio_reviewers_dawid_skene_flags_the_weak_one_and_beats_the_vote(
    server: Server, users: Users, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t0 = time.monotonic()
    run_dir, truth = make_llm_run(tmp_path)
    store = RunStore.open(run_dir)
    queued = [e.item_id for e in store.queue()]
    store.close()
    assert sorted(queued) == sorted(truth)
    admin_token = users.admin_token
    monkeypatch.setenv("LABEL_STUDIO_URL", server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", admin_token)

    code, out = labeler("review", "push", str(run_dir), "--tool", "labelstudio", "--overlap", "3")
    assert code == 0 and "created project" in out, out
    admin = api(server.url, admin_token)
    project = admin.get("/api/projects", params={"title": "news review agg1"}).json()["results"][0]
    assert project["maximum_annotations"] == 3
    body = admin.get("/api/tasks", params={"project": project["id"], "page_size": 1000, "fields": "all"}).json()
    tasks = {t["data"]["item_id"]: t["id"] for t in body["tasks"]}
    assert set(tasks) == set(truth)

    # three users annotate every task, the constant one first (so that a tied vote goes its way)
    clients = users.clients()
    given = answers(truth)
    for item, tid in sorted(tasks.items()):
        for r in REVIEWERS:
            annotate(clients[r], tid, result(given[r][item]))
    true_acc = {r: float(np.mean([given[r][i] == truth[i] for i in truth])) for r in REVIEWERS}

    code, out = labeler("review", "pull", str(run_dir), "--tool", "labelstudio")
    assert code == 0, out
    assert f"{3 * N} added, 0 changed, 0 unchanged, 0 removed" in out, out
    rid = users.ids

    # review status by Dawid–Skene: the constant reviewer is flagged, and only it; estimates near the truth
    code, out = labeler("review", "status", str(run_dir), "--consensus", "dawid_skene")
    assert code == 0, out
    flagged = [ln for ln in out.splitlines() if "FLAGGED" in ln]
    assert len(flagged) == 1 and flagged[0].strip().startswith(f"{rid['constant']} <constant@example.com> ("), out
    assert f"{N} items, {N} answered by a reviewer, {N} by two or more" in out, out
    status = review_status(run_dir, method="dawid_skene")
    est = {q.name: q.accuracy for q in status.annotators}
    assert status.flagged == (rid["constant"],)
    for r in REVIEWERS:  # the posterior-expected accuracy, within sampling and fit error of the realised one
        assert est[rid[r]] == pytest.approx(true_acc[r], abs=0.08), (r, est[rid[r]], true_acc[r])
    print(f"status:\n{out}")

    # export: the Dawid–Skene consensus against the vote (the constant reviewer wins every tie of the vote)
    got = {}
    for method in ("vote", "dawid_skene"):
        path = tmp_path / f"{method}.jsonl"
        code, out = labeler("export", str(run_dir), "--out", str(path), "--consensus", method)
        assert code == 0, out
        got[method] = accuracy(path, truth)
    plain = tmp_path / "plain.jsonl"
    code, out = labeler("export", str(run_dir), "--out", str(plain))
    assert code == 0, out
    got["human rule"] = accuracy(plain, truth)
    # careful alone is right ~95%; the noisy one and the LLM agree with it more often than not, the constant
    # one says nothing: Dawid–Skene learns that and follows careful; the vote loses every item where the
    # constant reviewer ties with one wrong answer
    assert got["dawid_skene"] >= 0.9, got
    assert got["dawid_skene"] >= got["vote"] + 0.05, got

    # route --more-reviews: the least certain items; a second push raises their overlap in the project
    code, out = labeler("route", str(run_dir), "--more-reviews", "3", "--consensus", "dawid_skene")
    assert code == 0 and "moved to the front" in out, out
    store = RunStore.open(run_dir)
    picked = [e.item_id for e in store.queue() if "more_reviews" in e.reasons]
    store.close()
    assert len(picked) == 3, picked
    code, out = labeler("review", "push", str(run_dir), "--tool", "labelstudio", "--overlap", "3")
    assert code == 0 and "0 new tasks" in out, out
    assert "3 task(s) routed for more reviews ask one more reviewer than they have" in out, out
    admin = api(server.url, admin_token)  # a fresh access token
    for item in picked:
        t = admin.get(f"/api/tasks/{tasks[item]}").json()
        assert (t["overlap"], t["is_labeled"], t["total_annotations"]) == (4, False, 3), t
    others = [t for i, t in tasks.items() if i not in picked]
    assert admin.get(f"/api/tasks/{others[0]}").json()["overlap"] == 3
    code, out = labeler("review", "push", str(run_dir), "--tool", "labelstudio", "--overlap", "3")
    assert code == 0 and "ask one more reviewer" not in out, out  # pushing again raises nothing twice
    assert admin.get(f"/api/tasks/{tasks[picked[0]]}").json()["overlap"] == 4

    # a fourth reviewer is offered exactly the raised tasks by Label Studio's own labeling stream
    dave = users.clients()["dave"]
    offered = set()
    for _ in picked:
        r = dave.get(f"/api/projects/{project['id']}/next")
        assert r.status_code == 200, r.text
        tid = int(r.json()["id"])
        offered.add(tid)
        item = next(i for i, t in tasks.items() if t == tid)
        annotate(dave, tid, result(truth[item]))
    assert offered == {tasks[i] for i in picked}
    assert dave.get(f"/api/projects/{project['id']}/next").status_code == 404  # nothing left for dave
    code, out = labeler("review", "pull", str(run_dir), "--tool", "labelstudio")
    assert code == 0 and "3 added" in out, out
    print(
        "accuracy against the truth: "
        + ", ".join(f"{k} {v:.1%}" for k, v in got.items())
        + "; realised reviewer accuracy: "
        + ", ".join(f"{r} {true_acc[r]:.1%} (est. {est[rid[r]]:.1%})" for r in REVIEWERS)
        + f"; test {time.monotonic() - t0:.0f} s"
    )


# --- multi-label: aggregated per label -------------------------------------------------------------------
TOPICS = ("economy", "sport", "tech", "health")
M = 60


def make_multi_run(root: Path) -> tuple[Path, dict[str, tuple[str, ...]], Any]:
    """`M` multi-label items, each with one or two true topics; the LLM drops or adds one topic on every
    4th item; every item queued."""
    from fakes import write_task

    from labeler.config import load_config
    from labeler.inputs import Row
    from labeler.store.rows import QueueEntry
    from labeler.tasktypes.registry import for_task
    from labeler.types import Item, ItemResult

    rng = np.random.default_rng(5)
    cfg = write_task(root / "task", labels=TOPICS, task={"type": "multi_label"})
    task = load_config(cfg, env={})
    kind = for_task(task)
    manifest = {
        "run_id": "aggm",
        "labels": list(TOPICS),
        "members": [{"name": "default", "template_hash": "x", "endpoint": {"model": "test-model"}}],
        "config_path": str(cfg),
        "config": dict(task.raw),
    }
    run_dir = root / "run"
    store = RunStore.create(run_dir, manifest)
    truth = {}
    for k in range(M):
        n = 1 + int(rng.random() < 0.4)
        truth[f"m{k:02d}"] = tuple(t for t in TOPICS if t in set(rng.choice(TOPICS, size=n, replace=False)))
    store.ingest([Row(Item(i, f"text {i}", k + 1)) for k, i in enumerate(truth)], members=["default"])
    entries = []
    for k, (i, t) in enumerate(truth.items()):
        llm = set(t)
        if k % 4 == 0:
            flip = str(rng.choice(TOPICS))
            llm = llm ^ {flip} or set(t)
        value = kind.encode(tuple(x for x in TOPICS if x in llm))
        store.put_result(ItemResult(i, "default", "labeled", label=value, confidence=0.5))
        entries.append(QueueEntry(i, k + 1, ("low_confidence",), 0.5, False, value, 0.5,
                                  member_labels={"default": value}))
    store.flush()
    store.write_queue(entries, [], seed=0)
    store.close()
    return run_dir, truth, kind


def multi_answers(truth: dict[str, tuple[str, ...]]) -> dict[str, dict[str, tuple[str, ...]]]:
    """careful: the true set, one topic added on 5% of items; noisy: adds each absent topic 40% of the time;
    constant: every topic, always."""
    rng = np.random.default_rng(13)
    out: dict[str, dict[str, tuple[str, ...]]] = {"careful": {}, "noisy": {}, "constant": {}}
    for i, t in truth.items():
        extra = {str(rng.choice(TOPICS))} if rng.random() < 0.05 else set()
        out["careful"][i] = tuple(x for x in TOPICS if x in set(t) | extra)
        out["noisy"][i] = tuple(x for x in TOPICS if x in t or rng.random() < 0.4)
        out["constant"][i] = TOPICS
    return out


@pytest.mark.labelstudio
def test_multi_label_through_label_studio_aggregated_per_label(
    server: Server, users: Users, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir, truth, _kind = make_multi_run(tmp_path)
    monkeypatch.setenv("LABEL_STUDIO_URL", server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", users.admin_token)
    code, out = labeler("review", "push", str(run_dir), "--tool", "labelstudio", "--overlap", "3")
    assert code == 0 and "created project" in out, out
    admin = api(server.url, users.admin_token)
    project = admin.get("/api/projects", params={"title": "news review aggm"}).json()["results"][0]
    assert 'choice="multiple"' in project["label_config"] and project["maximum_annotations"] == 3
    body = admin.get("/api/tasks", params={"project": project["id"], "page_size": 1000, "fields": "all"}).json()
    tasks = {t["data"]["item_id"]: t["id"] for t in body["tasks"]}
    assert set(tasks) == set(truth)
    given = multi_answers(truth)
    clients = users.clients()
    for item, tid in sorted(tasks.items()):
        for r in ("constant", "careful", "noisy"):
            res = [{"from_name": "label", "to_name": "text", "type": "choices",
                    "value": {"choices": list(given[r][item])}}]
            annotate(clients[r], tid, res)
    code, out = labeler("review", "pull", str(run_dir), "--tool", "labelstudio")
    assert code == 0 and f"{3 * M} added, 0 changed" in out, out

    got = {}
    for method in ("vote", "dawid_skene"):
        path = tmp_path / f"{method}.jsonl"
        code, out = labeler("export", str(run_dir), "--out", str(path), "--consensus", method)
        assert code == 0, out
        rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
        assert all(isinstance(r["label"], list) for r in rows), rows[0]
        got[method] = float(np.mean([tuple(r["label"]) == truth[r["id"]] for r in rows]))
    # per label, "constant" always says yes and "noisy" often does: the vote adds the topics they agree on;
    # Dawid–Skene learns that their yes means little and follows careful (right on 95% of the sets)
    assert got["dawid_skene"] >= 0.85, got
    assert got["dawid_skene"] >= got["vote"] + 0.15, got
    status = review_status(run_dir, method="dawid_skene", min_accuracy=0.8)
    ids = users.ids
    assert ids["constant"] in status.flagged and ids["careful"] not in status.flagged, status.flagged
    est = {q.name: q.accuracy for q in status.annotators}
    print(
        "multi-label, exact sets right: "
        + ", ".join(f"{k} {v:.1%}" for k, v in got.items())
        + "; per-label accuracy (est.): "
        + ", ".join(f"{r} {est[ids[r]]:.1%}" for r in ("careful", "noisy", "constant"))
    )


# --- raise_overlap without a server --------------------------------------------------------------------------
class FakeLabelStudio:
    """Tasks as Label Studio keeps them (overlap, total_annotations), and every PATCH recorded."""

    def __init__(self, tasks: dict[str, tuple[int, int]]) -> None:
        self.tasks = {i: {"id": n, "overlap": o, "total_annotations": d} for n, (i, (o, d)) in enumerate(tasks.items())}
        self.patches: list[tuple[int, dict[str, Any]]] = []

    def task_item_ids(self, project_id: int) -> dict[str, int]:
        return {i: int(t["id"]) for i, t in self.tasks.items()}

    def call(self, method: str, path: str, **kw: Any) -> Any:
        tid = int(path.rsplit("/", 1)[1])
        task = next(t for t in self.tasks.values() if t["id"] == tid)
        if method == "PATCH":
            self.patches.append((tid, kw["json"]))
            task.update(kw["json"])
        return dict(task)


def test_raise_overlap_asks_one_more_review_once_per_item() -> None:
    from labeler.review.live_sync import raise_overlap
    from labeler.store.rows import QueueEntry

    def entry(item: str, *reasons: str) -> QueueEntry:
        return QueueEntry(item, 1, reasons, 0.5, False, "sport", 0.5)

    ls = FakeLabelStudio({"a": (3, 3), "b": (3, 2), "c": (3, 0), "d": (3, 3)})
    entries = [entry("a", "more_reviews"), entry("b", "low_confidence", "more_reviews"), entry("c", "more_reviews"),
               entry("d", "low_confidence"), entry("x", "more_reviews")]  # x: not in the project (pushed new)
    raised = raise_overlap(ls, 1, entries, raised=set())
    assert raised == ["a", "b"]  # c has no answer yet: the project's overlap still stands for it
    assert ls.tasks["a"]["overlap"] == 4 and ls.tasks["b"]["overlap"] == 3  # b: 2 answers, one more is 3
    assert all(p["is_labeled"] is False for _, p in ls.patches)
    assert raise_overlap(ls, 1, entries, raised=set(raised)) == []  # the second push raises nothing twice
    assert ls.tasks["d"]["overlap"] == 3 and len(ls.patches) == 2
