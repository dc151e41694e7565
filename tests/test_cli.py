"""The command line: a user error is one line on stderr and exit code 2; --debug shows the traceback;
run / resume / export / estimate work end to end with a fake backend in place of the servers."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fakes import FakeBackend, item_number, json_answer, write_csv, write_task

from labeler.cli import main
from labeler.config import TaskConfig
from labeler.errors import ConfigError, InputError
from labeler.label import pipeline

GOLD = ["business", "sport", "tech", "sport"]


@pytest.fixture(autouse=True)
def _no_redirects(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_BASE_URL", "LABELER_CACHE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    write_csv(tmp_path / "items.csv", [{"id": f"d{n}", "text": f"item {n}: text"} for n in range(1, len(GOLD) + 1)])
    return write_task(tmp_path, sections={"retry": {"max_attempts": 1}})


@pytest.fixture
def fake_servers(monkeypatch: pytest.MonkeyPatch) -> list[FakeBackend]:
    """Every backend the pipeline opens is a FakeBackend answering the item's GOLD label."""
    made: list[FakeBackend] = []

    @contextlib.asynccontextmanager
    async def open_backends(task: TaskConfig) -> AsyncIterator[dict[str, FakeBackend]]:
        backends = {m.name: FakeBackend(lambda r: json_answer(GOLD[item_number(r) - 1])) for m in task.members}
        made.extend(backends.values())
        yield backends

    monkeypatch.setattr(pipeline, "open_backends", open_backends)
    return made


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("labeler: error: ")
    assert "Traceback" not in err
    return err


def test_a_user_error_is_one_line_and_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", str(tmp_path / "nope.toml")]) == 2
    assert "config file" in _one_line_error(capsys)


def test_debug_raises_the_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        main(["--debug", "estimate", str(tmp_path / "nope.toml")])


def test_a_bad_key_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_task(tmp_path, model={"base_url": "http://127.0.0.1:9/v1", "concurrenci": 3})
    assert main(["estimate", str(path)]) == 2
    assert "model.concurrenci" in _one_line_error(capsys)


def test_a_missing_column_fails_before_any_run_is_made(
    tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str], fake_servers: list[FakeBackend]
) -> None:
    write_csv(tmp_path / "other.csv", [{"id": "1", "body": "x"}])
    run_dir = tmp_path / "runs" / "r"
    argv = ["run", str(config), "--input", str(tmp_path / "other.csv"), "--run-dir", str(run_dir), "--quiet"]
    assert main(argv) == 2
    assert "input.text_column" in _one_line_error(capsys)
    assert not run_dir.exists() and fake_servers == []
    with pytest.raises(InputError):
        main(["--debug", *argv])


def test_estimate_prints_the_totals(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", str(config)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("items: 4 (0 skipped as empty, 0 to be truncated)")
    assert "default (test-model, cl100k_base): 4 requests" in out and "total: ≤$0.0000" in out


def test_run_resume_export(
    tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str], fake_servers: list[FakeBackend]
) -> None:
    run_dir = tmp_path / "runs" / "r1"
    out = tmp_path / "labels.csv"
    assert main(["run", str(config), "--run-dir", str(run_dir), "--limit", "3", "--quiet", "--export", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "done: labeled 3" in printed and f"run: {run_dir}" in printed and "labels: " in printed
    assert len(out.read_text().splitlines()) == 1 + 3

    assert main(["resume", str(run_dir), "--quiet"]) == 0
    assert "done: labeled 4" in capsys.readouterr().out
    assert sum(b.calls for b in fake_servers) == 4

    jsonl = tmp_path / "labels.jsonl"
    assert main(["export", str(run_dir), "--out", str(jsonl), "--with-text"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote 4 rows to {jsonl}"
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["label"] for r in rows] == GOLD and rows[0]["text"] == "item 1: text"


def test_export_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path / "not-a-run"), "--out", str(tmp_path / "x.csv")]) == 2
    assert "not a run directory" in _one_line_error(capsys)


def test_unknown_export_format_is_a_user_error(
    tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str], fake_servers: list[FakeBackend]
) -> None:
    run_dir = tmp_path / "runs" / "r2"
    assert main(["run", str(config), "--run-dir", str(run_dir), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["export", str(run_dir), "--out", str(tmp_path / "labels.xlsx")]) == 2
    assert "use one of csv, jsonl, parquet" in _one_line_error(capsys)


def test_a_second_run_into_the_same_dir_is_refused(
    tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str], fake_servers: list[FakeBackend]
) -> None:
    run_dir = tmp_path / "runs" / "r3"
    assert main(["run", str(config), "--run-dir", str(run_dir), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["run", str(config), "--run-dir", str(run_dir), "--quiet"]) == 2
    assert "labeler resume" in _one_line_error(capsys)


def test_argument_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["no-such-command"])
    assert exit_.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
