"""Multi-label and span tasks against the REAL argilla-server 2.8 (tests/test_review_live_argilla.py's server and
venv): `labeler review push` makes a MultiLabelQuestion / SpanQuestion dataset with the LLM's scored
suggestions, annotators respond through the REST API as the UI does (spans after emoji and accents, in code
points: argilla-server checks them against Python's len of the text), `labeler review pull` brings them
back, and the final dataset (`review merge`) holds exactly their annotations; the SDK's own export
(`dataset.records.to_list(flatten=True)`) is imported into a fresh run with the same result.

Run: `python -m pytest -m argilla tests/test_review_live_tasktypes_argilla.py`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
from tasktype_runs import TaskRun, final_labels, make_task_run
from test_review_live_argilla import OWNER_KEY, add_annotator, in_venv, review, server, venv_python

from labeler.review.importer import import_reviews
from labeler.tasktypes.spans import Span

pytestmark = pytest.mark.argilla
__all__ = ["server", "venv_python"]  # the fixtures, shared with test_review_live_argilla

EXPORT = """
import json, sys
import argilla as rg
client = rg.Argilla()
ds = client.datasets(name=sys.argv[1])
json.dump(ds.records(with_responses=True, with_suggestions=True).to_list(flatten=True), open(sys.argv[2], "w"),
          default=str)
"""


def _value(run: TaskRun, value: Any) -> list[Any]:
    if run.kind.name == "multi_label":
        return list(value)
    return [{"label": s.type, "start": s.start, "end": s.end} for s in value]


@pytest.mark.parametrize("task_type", ["multi_label", "spans"])
def test_push_respond_pull_merge_and_file_import(
    venv_python: Path, server: str, tmp_path: Path, task_type: str
) -> None:
    run = make_task_run(tmp_path / "live", task_type, run_id=f"{task_type[0]}1")
    out = review(venv_python, server, "push", str(run.run_dir), "--tool", "argilla")
    name = f"news review {task_type[0]}1"
    assert f"created project {name!r}" in out, out
    owner = httpx2.Client(base_url=server, headers={"X-Argilla-Api-Key": OWNER_KEY}, timeout=60)
    ds = next(d for d in owner.get("/api/v1/me/datasets").json()["items"] if d["name"] == name)
    questions = owner.get(f"/api/v1/datasets/{ds['id']}/questions").json()["items"]
    label_q = next(q for q in questions if q["name"] == "label")
    want_type = "multi_label_selection" if task_type == "multi_label" else "span"
    assert label_q["settings"]["type"] == want_type, label_q
    if task_type == "spans":
        assert label_q["settings"]["field"] == "text" and label_q["settings"]["allow_overlapping"] is False

    records = owner.get(
        f"/api/v1/datasets/{ds['id']}/records", params={"limit": 100, "include": "suggestions"}
    ).json()["items"]
    by_item = {r["external_id"]: r for r in records}
    assert set(by_item) == set(run.texts)
    for item, rec in by_item.items():  # the LLM's annotation as a scored suggestion, offsets as we sent them
        sugg = [s for s in rec.get("suggestions") or [] if s["question_id"] == label_q["id"]]
        want = _value(run, run.llm[item])
        assert [s["value"] for s in sugg] == ([want] if want else []), (item, sugg)
        if sugg:
            assert sugg[0]["score"] == [round(0.4 + int(item[1:]) / 20, 4)] * len(want)

    ann = add_annotator(server, owner, f"ann{task_type[0]}", ds["workspace_id"])
    for item, rec in sorted(by_item.items()):
        values = {"label": {"value": _value(run, run.human[item])}}
        if not run.human[item] and task_type == "multi_label":
            continue  # argilla-server takes no empty multi-label answer
        if run.human[item] != run.llm[item]:
            values["correction_reason"] = {"value": "model error"}
        r = ann.post(f"/api/v1/records/{rec['id']}/responses", json={"values": values, "status": "submitted"})
        assert r.status_code == 201, r.text
    # a span outside the text is refused by the server itself (its check is Python's len: code points)
    item = "t01"
    text = run.texts[item]
    r = owner.post(
        f"/api/v1/records/{by_item[item]['id']}/responses",
        json={"values": {"label": {"value": _value(run, (Span(0, len(text) + 1, "PER"),)) if task_type == "spans"
                                   else ["weather"]}}, "status": "submitted"},
    )
    assert r.status_code == 422, r.text

    out = review(venv_python, server, "pull", str(run.run_dir), "--tool", "argilla")
    n = sum(bool(v) or task_type == "spans" for v in run.human.values())
    assert f"{n} added, 0 changed, 0 unchanged, 0 removed" in out, out
    want = {i: v if (v or task_type == "spans") else None for i, v in run.human.items()}
    assert final_labels(run, tmp_path / "final.jsonl") == want

    # the SDK's export of the dataset, imported into a fresh run of the same items
    path = tmp_path / "argilla-export.json"
    got = in_venv(venv_python, EXPORT, name, str(path), env={"ARGILLA_API_URL": server, "ARGILLA_API_KEY": OWNER_KEY})
    assert got.returncode == 0, got.stderr[-3000:]
    exported = json.loads(path.read_text(encoding="utf-8"))
    assert any("label.responses" in r for r in exported), list(exported[0])
    fresh = make_task_run(tmp_path / "fresh", task_type, run_id=f"{task_type[0]}1")
    summary = import_reviews(fresh.run_dir, path)
    assert summary.reviews == n and summary.fmt == "argilla", summary
    assert final_labels(fresh, tmp_path / "fresh.jsonl") == want
