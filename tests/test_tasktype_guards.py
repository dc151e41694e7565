"""Commands built on one label per item refuse a multi-label or span run in one line naming what works."""

from __future__ import annotations

from pathlib import Path

import pytest
from tasktype_runs import make_task_run

from labeler.errors import ReviewError, TuneError
from labeler.review.tui import run_tui
from labeler.tune.relabel import relabel_run
from labeler.tune.run import tune_run


@pytest.mark.parametrize("task_type", ["multi_label", "spans"])
def test_tune_and_relabel_refuse_in_one_line(tmp_path: Path, task_type: str) -> None:
    run = make_task_run(tmp_path, task_type)
    works = "`labeler calibrate`, `labeler route`" if task_type == "multi_label" else "`labeler route`"
    for command, call in (("labeler tune", tune_run), ("labeler relabel", relabel_run)):
        with pytest.raises(TuneError) as exc:
            call(run.run_dir)
        msg = str(exc.value)
        assert "\n" not in msg and msg.startswith(f"{command} tunes single-label tasks, and run is task.type = ")
        assert repr(task_type) in msg and works in msg and "`labeler review`" in msg
    assert not (run.run_dir / "tuned.toml").exists()


@pytest.mark.parametrize("task_type", ["multi_label", "spans"])
def test_tui_refuses_and_points_to_serve(tmp_path: Path, task_type: str) -> None:
    run = make_task_run(tmp_path, task_type)
    out: list[str] = []
    with pytest.raises(ReviewError) as exc:
        run_tui(run.run_dir, reviewer="yan", read=lambda _p: "1", write=out.append)
    msg = str(exc.value)
    assert "\n" not in msg and f"task.type = {task_type!r}" in msg
    assert msg.endswith(f"`labeler review serve {run.run_dir}`") and out == []
