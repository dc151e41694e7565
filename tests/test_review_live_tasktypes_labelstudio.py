"""Multi-label and span tasks against a REAL Label Studio 1.23 server (tests/test_review_live_labelstudio.py's
server fixture and venv): `labeler review push` makes a project with `<Choices choice="multiple">` or
`<Labels>` over `<Text>` and the LLM's predictions (spans at UTF-16 offsets, as the browser's JavaScript
counts them, each region scored); a reviewer annotates through the REST API as the labeling UI sends it
(regions after emoji, flags and accents, so UTF-16 units and code points differ); `labeler review pull`
brings the annotations back and the final dataset (`review merge`) holds exactly them; the server's own JSON
and JSON-MIN exports are imported into fresh runs with the same result.

Run: `python -m pytest -m labelstudio tests/test_review_live_tasktypes_labelstudio.py`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from live_runs import labeler, ls_login
from tasktype_runs import TaskRun, final_labels, make_task_run
from test_review_live_labelstudio import ADMIN, ADMIN_PW, Server, api, server

from labeler.review.importer import import_reviews
from labeler.tasktypes.spans import utf16_offsets

pytestmark = pytest.mark.labelstudio
__all__ = ["server"]  # the fixture, shared with test_review_live_labelstudio


def js_slice(text: str, start: int, end: int) -> str:
    """text.slice(start, end) as JavaScript computes it (UTF-16 code units)."""
    return text.encode("utf-16-le")[2 * start : 2 * end].decode("utf-16-le")


def results(run: TaskRun, item: str, value: Any) -> list[dict[str, Any]]:
    """An annotation's result as Label Studio's UI sends it."""
    if run.kind.name == "multi_label":
        return [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": list(value)}}]
    text = run.texts[item]
    out = []
    for n, s in enumerate(value):
        start, end = utf16_offsets(text, s.start, s.end)
        out.append({"id": f"h{n}", "from_name": "label", "to_name": "text", "type": "labels", "origin": "manual",
                    "value": {"start": start, "end": end, "text": js_slice(text, start, end), "labels": [s.type]}})
    return out


@pytest.fixture(scope="module")
def token(server: Server) -> str:
    """The admin's personal access token (Label Studio makes one per user: a second POST is a 409)."""
    return ls_login(server.url, ADMIN, ADMIN_PW)


@pytest.mark.parametrize("task_type", ["multi_label", "spans"])
def test_push_annotate_pull_merge_and_file_import(
    server: Server, token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task_type: str
) -> None:
    run_id = f"{task_type[0]}1"
    run = make_task_run(tmp_path / "live", task_type, run_id=run_id)
    monkeypatch.setenv("LABEL_STUDIO_URL", server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", token)
    code, out = labeler("review", "push", str(run.run_dir), "--tool", "labelstudio")
    assert code == 0 and "created project" in out, out
    alice = api(server.url, token)
    project = alice.get("/api/projects", params={"title": f"news review {run_id}"}).json()["results"][0]
    config = project["label_config"]
    assert ('choice="multiple"' in config) if task_type == "multi_label" else ('<Labels name="label"' in config)
    body = alice.get("/api/tasks", params={"project": project["id"], "page_size": 100, "fields": "all"}).json()
    tasks = {t["data"]["item_id"]: t for t in body["tasks"]}
    assert set(tasks) == set(run.texts)

    # the predictions as the server keeps them: every label, or every span at offsets JavaScript slices right
    preds = alice.get("/api/predictions/", params={"project": project["id"]}).json()
    by_task = {p["task"]: p for p in preds}
    for item, t in tasks.items():
        p = by_task[t["id"]]
        assert p["score"] == pytest.approx(0.4 + int(item[1:]) / 20)
        if task_type == "multi_label":
            assert p["result"][0]["value"]["choices"] == list(run.llm[item])
            continue
        got = [(r["value"]["start"], r["value"]["end"], r["value"]["labels"][0]) for r in p["result"]]
        assert got == [(*utf16_offsets(run.texts[item], s.start, s.end), s.type) for s in run.llm[item]]
        for r in p["result"]:
            assert js_slice(run.texts[item], r["value"]["start"], r["value"]["end"]) == r["value"]["text"]
    shifted = [s for i, v in run.human.items() if task_type == "spans" for s in v
               if utf16_offsets(run.texts[i], s.start, s.end) != (s.start, s.end)]
    assert task_type == "multi_label" or len(shifted) >= 5  # spans whose two offset counts differ

    # a reviewer annotates every task (one span task with no entity at all: an empty result is an answer)
    for item, t in sorted(tasks.items()):
        res = results(run, item, run.human[item])
        if run.human[item] != run.llm[item]:
            res.append({"from_name": "correction_reason", "to_name": "text", "type": "choices",
                        "value": {"choices": ["model error"]}})
        r = alice.post(f"/api/tasks/{t['id']}/annotations/", json={"result": res})
        assert r.status_code == 201, r.text

    code, out = labeler("review", "pull", str(run.run_dir), "--tool", "labelstudio")
    assert code == 0, out
    assert f"{len(run.human)} added, 0 changed, 0 unchanged, 0 removed" in out, out
    assert final_labels(run, tmp_path / "final.jsonl") == run.human

    # the server's own exports, imported into fresh runs of the same items
    for export_type in ("JSON", "JSON_MIN"):
        r = alice.get(f"/api/projects/{project['id']}/export",
                      params={"exportType": export_type, "download_all_tasks": "true"})
        assert r.status_code == 200, r.text
        path = tmp_path / f"ls-{export_type}.json"
        path.write_bytes(r.content)
        fresh = make_task_run(tmp_path / export_type, task_type, run_id=run_id)
        summary = import_reviews(fresh.run_dir, path)
        assert summary.fmt == ("labelstudio" if export_type == "JSON" else "labelstudio-min"), summary
        got = final_labels(fresh, tmp_path / f"{export_type}.jsonl")
        if export_type == "JSON_MIN":  # JSON-MIN leaves an annotation with no region out entirely
            assert got == {i: v if v else None for i, v in run.human.items()}
        else:
            assert got == run.human
        print(f"{task_type} {export_type}: {json.dumps(summary.fmt)} {summary.reviews} reviews imported")
