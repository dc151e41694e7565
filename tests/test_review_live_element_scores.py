"""Per-element scores of multi-label and span predictions kept by a REAL Label Studio server (the server
fixture of tests/test_review_live_labelstudio.py): each span region carries its own span's confidence, the
multi-label choices result the lowest of its labels'.

Run: `python -m pytest -m labelstudio tests/test_review_live_element_scores.py`."""

from __future__ import annotations

from pathlib import Path

import pytest
from live_runs import labeler, ls_tasks, ls_users
from tasktype_runs import make_task_run
from test_review_live_labelstudio import Server, api, server
from test_review_tasktypes import _with_element_confidences

pytestmark = pytest.mark.labelstudio
__all__ = ["server"]


@pytest.fixture(scope="module")
def token(server: Server) -> str:
    """The admin's personal access token (Label Studio makes one per user: a second POST is a 409)."""
    return ls_users(server).admin_token


@pytest.mark.parametrize("task_type", ["multi_label", "spans"])
def test_pushed_predictions_keep_element_scores(
    server: Server, token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task_type: str
) -> None:
    run_id = f"e{task_type[0]}"
    run = make_task_run(tmp_path / "live", task_type, run_id=run_id)
    want = _with_element_confidences(run)
    monkeypatch.setenv("LABEL_STUDIO_URL", server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", token)
    code, out = labeler("review", "push", str(run.run_dir), "--tool", "labelstudio")
    assert code == 0, out
    alice = api(server.url, token)
    project, tasks = ls_tasks(alice, f"news review {run_id}")
    item_of = {t: i for i, t in tasks.items()}
    checked = 0
    for p in alice.get("/api/predictions/", params={"project": project["id"]}).json():
        item = item_of[p["task"]]
        own = [want[item][e] for e in run.kind.elements(run.llm[item])]
        if not own:
            continue
        if task_type == "spans":
            assert [r["score"] for r in p["result"]] == pytest.approx(own)
        else:
            assert p["result"][0]["score"] == pytest.approx(min(own))
        checked += 1
    assert checked >= 3
