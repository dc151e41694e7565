"""Aggregation with the live review sync, against the REAL argilla-server 2.8 (tests/test_review_live_argilla.py's
server and venv: its FastAPI app, SQLite, task distribution; an in-memory search engine): the run of
tests/test_aggregate_live.py (one LLM member, 120 items, every item queued) is pushed with `--overlap 3`,
which sets the dataset's TaskDistribution to min_submitted 3; three Argilla annotators, each with its own
API key, submit responses of designed quality (constant: always `business`, first; careful: right 95%;
noisy: right 70%) and a record is completed by the server at its third submission, not before.
`labeler review pull` brings 360 answers back, `labeler review status --consensus dawid_skene` flags the
constant annotator and only it, and `labeler export --consensus dawid_skene` beats `--consensus vote`
against the truth. Then `labeler route --more-reviews 3` and a second push: argilla-server keeps one
min_submitted per dataset and none per record, so the push says so in one line and changes nothing there.
A multi-label run goes the same way, aggregated per label.

Run: `python -m pytest -m argilla tests/test_aggregate_live_argilla.py`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import numpy as np
import pytest
from live_runs import (
    REVIEWERS,
    M,
    N,
    answers,
    export_accuracy,
    labeler,
    make_llm_run,
    make_multi_run,
    multi_answers,
)
from test_review_live_argilla import OWNER_KEY, review, server, venv_python

from labeler.aggregate.status import review_status
from labeler.store import RunStore

pytestmark = pytest.mark.argilla
__all__ = ["server", "venv_python"]  # the fixtures, shared with test_review_live_argilla


@dataclass(frozen=True)
class Annotators:
    owner: httpx2.Client
    clients: dict[str, httpx2.Client]  # constant, careful, noisy -> a client with that user's own API key
    ids: dict[str, str]  # name -> Argilla user id

    def join(self, workspace: str) -> None:
        """Make every annotator a member of `workspace` (the pushed dataset's), once."""
        have = {str(u["id"]) for u in self.owner.get(f"/api/v1/workspaces/{workspace}/users").json()["items"]}
        for uid in set(self.ids.values()) - have:
            r = self.owner.post(f"/api/v1/workspaces/{workspace}/users", json={"user_id": uid})
            assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def annotators(server: str) -> Annotators:
    """Three annotators made through the API as an owner would, each with its own API key."""
    owner = httpx2.Client(base_url=server, headers={"X-Argilla-Api-Key": OWNER_KEY}, timeout=60)
    clients, ids = {}, {}
    for name in REVIEWERS:
        r = owner.post("/api/v1/users", json={"username": name, "password": f"{name}-pass-1", "first_name": name,
                                              "role": "annotator"})  # fmt: skip
        assert r.status_code == 201, r.text
        user = r.json()
        clients[name] = httpx2.Client(base_url=server, headers={"X-Argilla-Api-Key": user["api_key"]}, timeout=60)
        ids[name] = str(user["id"])
    return Annotators(owner, clients, ids)


def dataset(owner: httpx2.Client, name: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The pushed dataset `name` and its records: item id -> record id."""
    ds = next(d for d in owner.get("/api/v1/me/datasets").json()["items"] if d["name"] == name)
    records = owner.get(f"/api/v1/datasets/{ds['id']}/records", params={"limit": 1000}).json()["items"]
    return ds, {r["external_id"]: r["id"] for r in records}


def statuses(owner: httpx2.Client, ds: dict[str, Any]) -> dict[str, str]:
    """item id -> the record's status as argilla-server computed it ("pending" / "completed")."""
    records = owner.get(f"/api/v1/datasets/{ds['id']}/records", params={"limit": 1000}).json()["items"]
    return {r["external_id"]: r["status"] for r in records}


def respond(client: httpx2.Client, record: str, value: Any) -> None:
    r = client.post(f"/api/v1/records/{record}/responses", json={"values": {"label": {"value": value}},
                                                                 "status": "submitted"})  # fmt: skip
    assert r.status_code == 201, r.text


def test_three_argilla_annotators_dawid_skene_flags_the_weak_one_and_beats_the_vote(
    venv_python: Path, server: str, annotators: Annotators, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t0 = time.monotonic()
    run_dir, truth = make_llm_run(tmp_path, run_id="agg1")
    out = review(venv_python, server, "push", str(run_dir), "--tool", "argilla", "--overlap", "3")
    assert "created project 'news review agg1'" in out and "3 reviewer(s) per item" in out, out
    owner = annotators.owner
    ds, records = dataset(owner, "news review agg1")
    assert ds["distribution"] == {"strategy": "overlap", "min_submitted": 3}
    assert set(records) == set(truth)
    annotators.join(ds["workspace_id"])

    given = answers(truth)
    first = min(records)
    for k, r in enumerate(REVIEWERS):  # one record watched: pending until its third submission
        assert statuses(owner, ds)[first] == "pending", (k, r)
        respond(annotators.clients[r], records[first], given[r][first])
    assert statuses(owner, ds)[first] == "completed"
    for item, record in sorted(records.items()):
        if item != first:
            for r in REVIEWERS:  # the constant one first, so that a tied vote goes its way
                respond(annotators.clients[r], record, given[r][item])
    assert set(statuses(owner, ds).values()) == {"completed"}
    true_acc = {r: float(np.mean([given[r][i] == truth[i] for i in truth])) for r in REVIEWERS}

    out = review(venv_python, server, "pull", str(run_dir), "--tool", "argilla")
    assert f"pulled {3 * N} submitted answers" in out and f"{3 * N} added, 0 changed, 0 unchanged" in out, out
    ids = annotators.ids

    code, out = labeler("review", "status", str(run_dir), "--consensus", "dawid_skene")
    assert code == 0, out
    flagged = [ln for ln in out.splitlines() if "FLAGGED" in ln]
    assert len(flagged) == 1 and flagged[0].strip().startswith(f"{ids['constant']} <constant> ("), out
    assert f"{N} items, {N} answered by a reviewer, {N} by two or more" in out, out
    status = review_status(run_dir, method="dawid_skene")
    assert status.flagged == (ids["constant"],)
    est = {q.name: q.accuracy for q in status.annotators}
    for r in REVIEWERS:  # the posterior-expected accuracy, within sampling and fit error of the realised one
        assert est[ids[r]] == pytest.approx(true_acc[r], abs=0.08), (r, est[ids[r]], true_acc[r])
    print(f"status:\n{out}")

    got = export_accuracy(run_dir, tmp_path, truth)
    assert got["dawid_skene"] >= 0.9, got
    assert got["dawid_skene"] >= got["vote"] + 0.05, got

    # route --more-reviews, then push again: no record can ask for one more submission in Argilla
    code, out = labeler("route", str(run_dir), "--more-reviews", "3", "--consensus", "dawid_skene")
    assert code == 0 and "3 moved to the front" in out, out
    store = RunStore.open(run_dir)
    picked = [e.item_id for e in store.queue() if "more_reviews" in e.reasons]
    store.close()
    assert len(picked) == 3, picked
    out = review(venv_python, server, "push", str(run_dir), "--tool", "argilla", "--overlap", "3")
    assert "0 new tasks, 120 there already" in out, out
    warned = [ln for ln in out.splitlines() if ln.startswith("warning: Argilla asks every record")]
    assert len(warned) == 1, out
    assert "the 3 item(s) routed for more reviews that dataset 'news review agg1' already has" in warned[0], out
    assert f"labeler review tui {run_dir}" in warned[0], out
    ds, again = dataset(owner, "news review agg1")
    assert again == records and ds["distribution"] == {"strategy": "overlap", "min_submitted": 3}
    assert {statuses(owner, ds)[i] for i in picked} == {"completed"}  # nobody is asked for more
    print(
        "accuracy against the truth: "
        + ", ".join(f"{k} {v:.1%}" for k, v in got.items())
        + "; realised reviewer accuracy: "
        + ", ".join(f"{r} {true_acc[r]:.1%} (est. {est[ids[r]]:.1%})" for r in REVIEWERS)
        + f"; test {time.monotonic() - t0:.0f} s"
    )


def test_multi_label_through_argilla_aggregated_per_label(
    venv_python: Path, server: str, annotators: Annotators, tmp_path: Path
) -> None:
    t0 = time.monotonic()
    run_dir, truth = make_multi_run(tmp_path, run_id="aggm", one_draw=True)
    out = review(venv_python, server, "push", str(run_dir), "--tool", "argilla", "--overlap", "3")
    assert "created project 'news review aggm'" in out, out
    owner = annotators.owner
    ds, records = dataset(owner, "news review aggm")
    assert ds["distribution"] == {"strategy": "overlap", "min_submitted": 3}
    label_q = next(q for q in owner.get(f"/api/v1/datasets/{ds['id']}/questions").json()["items"]
                   if q["name"] == "label")  # fmt: skip
    assert label_q["settings"]["type"] == "multi_label_selection", label_q
    annotators.join(ds["workspace_id"])
    given = multi_answers(truth)
    for item, record in sorted(records.items()):
        for r in REVIEWERS:
            respond(annotators.clients[r], record, list(given[r][item]))
    assert set(statuses(owner, ds).values()) == {"completed"}
    out = review(venv_python, server, "pull", str(run_dir), "--tool", "argilla")
    assert f"{3 * M} added, 0 changed" in out, out

    got = export_accuracy(run_dir, tmp_path, truth)
    # per label, "constant" always says yes and "noisy" often does: the vote adds the topics they agree on;
    # Dawid–Skene learns that their yes means little and follows careful (right on 95% of the sets)
    assert got["dawid_skene"] >= 0.85, got
    assert got["dawid_skene"] >= got["vote"] + 0.15, got
    status = review_status(run_dir, method="dawid_skene", min_accuracy=0.8)
    ids = annotators.ids
    assert ids["constant"] in status.flagged and ids["careful"] not in status.flagged, status.flagged
    est = {q.name: q.accuracy for q in status.annotators}
    print(
        "multi-label, exact sets right: "
        + ", ".join(f"{k} {v:.1%}" for k, v in got.items())
        + "; per-label accuracy (est.): "
        + ", ".join(f"{r} {est[ids[r]]:.1%}" for r in REVIEWERS)
        + f"; test {time.monotonic() - t0:.0f} s"
    )
