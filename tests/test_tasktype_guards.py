"""Commands built on one label per item refuse a multi-label or span run in one line naming what works."""

from __future__ import annotations

from pathlib import Path

import pytest
from tasktype_runs import make_task_run

from labeler.errors import ReviewError
from labeler.review.tui import run_tui


@pytest.mark.parametrize("task_type", ["multi_label", "spans"])
def test_tui_refuses_and_points_to_serve(tmp_path: Path, task_type: str) -> None:
    run = make_task_run(tmp_path, task_type)
    out: list[str] = []
    with pytest.raises(ReviewError) as exc:
        run_tui(run.run_dir, reviewer="yan", read=lambda _p: "1", write=out.append)
    msg = str(exc.value)
    assert "\n" not in msg and f"task.type = {task_type!r}" in msg
    assert msg.endswith(f"`labeler review serve {run.run_dir}`") and out == []
