"""Issue 24: bad input never loses an item silently or leaks a key. One test per case, with the file or
value the issue gives: an unterminated quote, extra fields, terminal escapes in CSVs for people,
unbounded concurrency, a corrupt manifest.json, a key inside a 200 answer, a negative timeout."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fakes import FakeBackend, json_answer, write_task

from labeler.cli import main
from labeler.config import TaskConfig
from labeler.label import pipeline

LABELS = ("business", "sport", "tech")


@pytest.fixture(autouse=True)
def _no_redirects(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_BASE_URL", "LABELER_CACHE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every backend the pipeline opens answers answers[0] (a JSON answer text) to every request."""
    said = [json_answer("sport")]

    @contextlib.asynccontextmanager
    async def open_backends(task: TaskConfig) -> AsyncIterator[dict[str, FakeBackend]]:
        yield {m.name: FakeBackend(lambda r: said[0]) for m in task.members}

    monkeypatch.setattr(pipeline, "open_backends", open_backends)
    return said


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("labeler: error: ") and "Traceback" not in err, err
    return err


def _corpus(root: Path, text: str, **task: object) -> Path:
    (root / "items.csv").write_text(text, encoding="utf-8", newline="")
    return write_task(root, sections={"retry": {"max_attempts": 1}, **task})  # type: ignore[arg-type]


# --- case 5: a corrupt manifest.json ------------------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["resume", "{run}", "--quiet"],
        ["export", "{run}", "--out", "{tmp}/x.csv"],
        ["route", "{run}"],
        ["eval", "{run}"],
        ["review", "export", "{run}", "--format", "csv", "--out", "{tmp}/q.csv"],
    ],
)
def test_a_corrupt_manifest_is_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], answers: list[str], argv: list[str]
) -> None:
    config = _corpus(tmp_path, "id,text\nd1,item 1\nd2,item 2\n")
    run = tmp_path / "runs" / "r"
    assert main(["run", str(config), "--run-dir", str(run), "--quiet"]) == 0
    capsys.readouterr()
    (run / "manifest.json").write_text("{not json\n", encoding="utf-8")  # echo '{not json' > runs/r/manifest.json
    assert main([a.format(run=run, tmp=tmp_path) for a in argv]) == 2
    err = _error_line(capsys)
    why = "not valid JSON: Expecting property name enclosed in double quotes"
    assert f"{run / 'manifest.json'} is damaged ({why})" in err
    assert "restore it from a backup or start a new run" in err
