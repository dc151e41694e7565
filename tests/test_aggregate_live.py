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

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from live_runs import (
    REVIEWERS,
    LsUsers,
    M,
    N,
    answers,
    export_accuracy,
    labeler,
    ls_tasks,
    ls_users,
    make_llm_run,
    make_multi_run,
    multi_answers,
)
from test_review_live_labelstudio import Server, annotate, result, server

from labeler.aggregate.status import review_status
from labeler.store import RunStore

__all__ = ["server"]  # the fixture, shared with test_review_live_labelstudio


@pytest.fixture(scope="module")
def users(server: Server) -> LsUsers:
    """The admin's token and four reviewers (the three of REVIEWERS and dave)."""
    return ls_users(server, (*REVIEWERS, "dave"))


@pytest.mark.labelstudio
def test_three_label_studio_reviewers_dawid_skene_flags_the_weak_one_and_beats_the_vote(
    server: Server, users: LsUsers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
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
    project, tasks = ls_tasks(users.admin(), "news review agg1")
    assert project["maximum_annotations"] == 3
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
    got = export_accuracy(run_dir, tmp_path, truth)
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
    admin = users.admin()  # a fresh access token
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
@pytest.mark.labelstudio
def test_multi_label_through_label_studio_aggregated_per_label(
    server: Server, users: LsUsers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir, truth = make_multi_run(tmp_path)
    monkeypatch.setenv("LABEL_STUDIO_URL", server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", users.admin_token)
    code, out = labeler("review", "push", str(run_dir), "--tool", "labelstudio", "--overlap", "3")
    assert code == 0 and "created project" in out, out
    project, tasks = ls_tasks(users.admin(), "news review aggm")
    assert 'choice="multiple"' in project["label_config"] and project["maximum_annotations"] == 3
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

    got = export_accuracy(run_dir, tmp_path, truth)
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
