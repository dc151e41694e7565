"""The small things of issue 25, item 4, each with its known answer: `tune --dev` names how many of the
file's ids the run holds; a run that fails before its first item leaves nothing (so `run` again works);
`tune` shows the run's progress line per candidate; an interrupted `tune` says to rerun `tune`; a CSV
few-shot pool with extra columns is read; relabel's routing table without an audit says its expected
accuracies are the calibrator's estimate alone."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from fakes import write_csv, write_task
from test_runner import _patch_backends, make_task
from test_tune import N, backend, corpus

from labeler.cli.tune import cmd_tune
from labeler.config import TaskConfig, load_config
from labeler.errors import ConfigError, LocalServerError, RunStoreError, TuneError
from labeler.label import pipeline
from labeler.store import RunStore
from labeler.tune.relabel import format_relabel
from labeler.tune.run import tune_run


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gold: list[str] | None = None) -> Path:
    probs, truth = corpus()
    task = make_task(
        tmp_path, truth if gold is None else gold, sections={"tune": {"strategies": ["fixed"], "corrections": ["none"]}}
    )
    _patch_backends(monkeypatch, lambda name: backend(probs))
    run_dir, _ = asyncio.run(pipeline.start_run(task, run_dir=tmp_path / "runs" / "base", show_progress=False))
    return run_dir


def test_a_dev_file_of_other_ids_says_how_many_the_run_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = _run(tmp_path, monkeypatch, gold=[""] * N)
    dev = [(f"other{i}", "sport") for i in range(25)] + [("d001", "sport"), ("d002", "tech")]
    with pytest.raises(TuneError, match=r"has 27 ids, 2 of them items of this run .* must be part of the run's corpus"):
        tune_run(run_dir, dev=dev)


def test_tune_shows_the_progress_line_per_candidate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = _run(tmp_path, monkeypatch)
    capsys.readouterr()
    tune_run(run_dir, max_labels=20, show_progress=True)
    err = capsys.readouterr().err
    assert "23/23 (100%)" in err and "labels/s" in err and "ETA" in err  # 20 items + 3 content-free inputs
    assert "candidate task/fixed (1 of 1)" in err


def test_an_interrupted_tune_says_to_rerun_tune(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*args: object, **kw: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("labeler.tune.run.tune_run", interrupted)
    args = argparse.Namespace(
        run_dir=tmp_path / "runs" / "r1",
        dev=None,
        max_labels=None,
        strategy=None,
        variant=None,
        correction=None,
        folds=None,
        seed=None,
        quiet=True,
    )
    assert cmd_tune(args) == 130
    err = capsys.readouterr().err
    assert "rerun `labeler tune" in err and "not asked or paid again" in err and "labeler resume" not in err


def _failing_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    @contextlib.asynccontextmanager
    async def no_model(task: TaskConfig) -> AsyncIterator[dict[str, object]]:
        raise LocalServerError("the local model gemma is not installed; run `labeler setup-local`")
        yield {}  # pragma: no cover

    monkeypatch.setattr(pipeline, "open_backends", no_model)


def test_a_run_that_fails_before_its_first_item_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probs, truth = corpus()
    task = make_task(tmp_path, truth)
    run_dir = tmp_path / "runs" / "r1"
    _failing_at_start(monkeypatch)
    with pytest.raises(LocalServerError):
        asyncio.run(pipeline.start_run(task, run_dir=run_dir, show_progress=False))
    assert not run_dir.exists()  # no empty run directory
    with pytest.raises(RunStoreError, match="not a run directory"):  # resume: nothing there to resume, said so
        asyncio.run(pipeline.resume_run(run_dir, show_progress=False))
    given = tmp_path / "runs" / "mine"  # a directory the user made: emptied of the run's files, kept
    given.mkdir()
    with pytest.raises(LocalServerError):
        asyncio.run(pipeline.start_run(task, run_dir=given, show_progress=False))
    assert given.is_dir() and not any(given.iterdir())

    _patch_backends(monkeypatch, lambda name: backend(probs))  # the model installed: run again, same folders
    for d in (run_dir, given):
        out, summary = asyncio.run(pipeline.start_run(task, run_dir=d, show_progress=False))
        assert summary.counts == {"labeled": N}
        store = RunStore.open(out)
        assert store.count_items() == N
        store.close()


def test_a_run_that_fails_after_its_first_item_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probs, truth = corpus()
    task = make_task(tmp_path, truth, model={"concurrency": 1})
    run_dir = tmp_path / "runs" / "r1"
    _patch_backends(monkeypatch, lambda name: backend(probs))
    asyncio.run(pipeline.start_run(task, run_dir=run_dir, limit=5, show_progress=False))
    _failing_at_start(monkeypatch)  # labeled 5, then the model went missing: the run stays, resumable
    with pytest.raises(LocalServerError):
        asyncio.run(pipeline.resume_run(run_dir, show_progress=False))
    assert (run_dir / "manifest.json").exists()
    _patch_backends(monkeypatch, lambda name: backend(probs))
    summary = asyncio.run(pipeline.resume_run(run_dir, show_progress=False))
    assert summary.counts == {"labeled": N}


def test_a_csv_pool_with_extra_columns_is_read_and_they_are_ignored(tmp_path: Path) -> None:
    write_csv(tmp_path / "pool.csv", [{"id": "p1", "text": "Goal in the last minute", "label": "sport", "src": "x"}])
    write_csv(tmp_path / "ex.csv", [{"id": "e1", "text": "Shares fell", "label": "business"}])
    path = write_task(tmp_path, task={"examples": "ex.csv"}, sections={"fewshot": {"pool": "pool.csv"}})
    task = load_config(path, env={})
    assert [(e.text, e.label) for e in task.examples] == [("Shares fell", "business")]
    assert [(e.text, e.label) for e in task.quality.fewshot.pool] == [("Goal in the last minute", "sport")]
    write_csv(tmp_path / "pool.csv", [{"id": "p1", "text": "Goal"}])
    with pytest.raises(ConfigError, match=r"pool\.csv line 2 must have the keys text and label$"):
        load_config(path, env={})
    inline = write_task(tmp_path, task={"examples": [{"text": "Goal", "label": "sport", "lable": "x"}]})
    with pytest.raises(ConfigError, match=r"task\.examples\[0\] must have the keys text and label and no others"):
        load_config(inline, env={})  # a table's extra key is a typo, not a column


def test_the_routing_table_without_an_audit_says_its_accuracies_are_estimates() -> None:
    row = {
        "target": 0.9,
        "threshold": 0.8,
        "review": 10,
        "n": 100,
        "expected_accuracy": 0.93,
        "audit_accuracy": float("nan"),
        "audit_low": float("nan"),
        "audit_high": float("nan"),
        "audit_n": 0,
    }
    report = {
        "run_dir": "runs/r1-tuned",
        "from": "runs/r1",
        "cached": 100,
        "asked": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "cost": 0.0,
        "seconds": 1.0,
        "routing": {"items": 100, "audit_items": 0, "rows": [row], "target": 0.9},
    }
    text = format_relabel(report)
    assert "the expected accuracies are the calibrator's estimate alone" in text
    assert "route an audit first (labeler route runs/r1 --audit-fraction 0.1" in text
    report["routing"]["audit_items"] = 12
    assert "estimate alone" not in format_relabel(report)
    assert np.isnan(row["audit_accuracy"])  # the table itself still shows "—" for the audit column


def test_tuning_in_place_replaces_a_calibrator_fitted_before_the_correction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from labeler.confidence.run import ENSEMBLE, calibrate_run

    probs, truth = corpus()
    labels = sorted(set(truth))
    gold = [labels[(labels.index(t) + 1) % 3] if i % 4 == 0 else t for i, t in enumerate(truth)]  # 1 in 4 wrong
    task = make_task(tmp_path, gold, sections={"tune": {"strategies": ["fixed"], "corrections": ["offsets_ll"]}})
    _patch_backends(monkeypatch, lambda name: backend(probs))
    run_dir, _ = asyncio.run(pipeline.start_run(task, run_dir=tmp_path / "runs" / "base", show_progress=False))
    store = RunStore.open(run_dir)
    calibrate_run(store, store.task(), methods=[ENSEMBLE])  # fitted on the raw, biased answers
    before = store.calibrator(ENSEMBLE)
    store.close()
    assert before is not None
    report = tune_run(run_dir, max_labels=60)
    assert report["applied_in_place"] and report["calibrator"]["fitted_on"] == "corrected out-of-fold predictions"
    store = RunStore.open(run_dir)
    after = store.calibrator(ENSEMBLE)
    store.close()
    assert after is not None and after.n_fit == 60 and set(after.out_of_fold) == set(report["oof"]["ids"])
    assert after.params == report["calibrator"]["params"] != before.params
