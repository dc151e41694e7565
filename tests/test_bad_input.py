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


# --- case 4: unbounded concurrency ---------------------------------------------------------------
def test_a_huge_concurrency_starts_no_more_workers_than_items_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio
    import tracemalloc

    from fakes import BASE_URL, completion

    seen = {"in_flight": 0, "most": 0, "tasks": 0}

    class Slow:
        async def complete(self, request: object) -> object:
            seen["in_flight"] += 1
            seen["most"] = max(seen["most"], seen["in_flight"])
            seen["tasks"] = max(seen["tasks"], len(asyncio.all_tasks()))
            await asyncio.sleep(0.05)  # every worker that started is in flight together
            seen["in_flight"] -= 1
            return completion(json_answer("sport"))

        async def aclose(self) -> None:
            pass

    @contextlib.asynccontextmanager
    async def open_backends(task: TaskConfig) -> AsyncIterator[dict[str, Slow]]:
        yield {m.name: Slow() for m in task.members}

    monkeypatch.setattr(pipeline, "open_backends", open_backends)
    (tmp_path / "items.csv").write_text("id,text\n" + "".join(f"d{i},item {i}\n" for i in range(5)), encoding="utf-8")
    config = write_task(tmp_path, model={"base_url": BASE_URL, "model": "test-model", "concurrency": 10_000_000})
    tracemalloc.start()
    try:
        assert main(["run", str(config), "--run-dir", str(tmp_path / "runs" / "r"), "--quiet"]) == 0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    err = capsys.readouterr().err
    assert "warning: concurrency 10000000 is above 256; using 5" in err
    assert seen["most"] == 5  # one worker per pending item, all in flight at once
    assert seen["tasks"] <= 5 + 4  # the 5 workers, their member, the main task, the progress ticker
    assert peak < 20 * 2**20, f"{peak / 2**20:.0f} MiB"  # ten million workers took 2 GB; 1.3 MiB measured


def test_worker_count_caps_at_pending_requests_and_the_maximum() -> None:
    from labeler.label.slots import MAX_WORKERS, worker_count

    said: list[str] = []
    assert worker_count(8, 5) == 5 and worker_count(8, 100) == 8 and worker_count(8, 0) == 0
    assert worker_count(8, 17, k=4) == 5  # 17 items, 4 a request: 5 requests
    assert worker_count(10**7, 10**6, name="big", warn=said.append) == MAX_WORKERS == 256
    assert said == ["concurrency 10000000 of member 'big' is above 256; using 256"]


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


# --- case 1: an unterminated quote swallows rows ----------------------------------------------
SWALLOWED = 'id,text\ng0,first item\ng1,"id=g1 ... unterminated\ng2,id=g2 second item\ng3,id=g3 third item\n'


def test_an_unterminated_quote_is_refused_by_default_naming_the_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], answers: list[str]
) -> None:
    config = _corpus(tmp_path, SWALLOWED)
    run = tmp_path / "runs" / "r"
    assert main(["run", str(config), "--run-dir", str(run), "--quiet"]) == 2
    err = _error_line(capsys)
    assert "items.csv: 2 lines inside quoted fields read as rows of the file" in err
    assert "line 3: the quoted text of g1 runs on over lines 4–5, which read as rows g2, g3" in err
    assert "an unterminated quote? close it, or pass --no-strict" in err
    assert not run.exists()  # nothing half-made is left behind


def test_no_strict_warns_with_the_lines_and_the_count_and_keeps_them_as_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], answers: list[str]
) -> None:
    from labeler.store import RunStore

    config = _corpus(tmp_path, SWALLOWED)
    run = tmp_path / "runs" / "r"
    assert main(["run", str(config), "--run-dir", str(run), "--quiet", "--no-strict"]) == 0
    err = capsys.readouterr().err
    assert "warning: items.csv: 2 lines inside quoted fields read as rows of the file (line 3: " in err
    assert "kept as text (--no-strict): 2 rows may be missing" in err
    store = RunStore.open(run)
    try:
        assert [i.id for i in store.items_where("1", ())] == ["g0", "g1"]
    finally:
        store.close()


@pytest.mark.parametrize(
    "text",
    [
        # a letter quoted over lines: "thanks, bye" splits in two but "thanks" is not shaped like an id
        'id,text\ng1,"Dear team,\nthanks, bye\nsee g2 below"\ng2,ok\n',
        # a line inside the text that reads as row g2, which is a row of its own too: quoted, not swallowed
        'id,text\ng1,"an example row:\ng2,ok"\ng2,ok\n',
        # CRLF line ends and a multi-line field in a TSV-like layout with more columns
        'id,text,gold\r\nd1,"line one\r\nline two, still text",sport\r\nd2,plain,tech\r\n',
    ],
)
def test_a_legitimate_multi_line_field_is_not_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], answers: list[str], text: str
) -> None:
    config = _corpus(tmp_path, text)
    run = tmp_path / "runs" / "r"
    assert main(["run", str(config), "--run-dir", str(run), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "inside quoted fields" not in err and "warning" not in err, err


def test_the_issue_file_without_a_row_before_it_is_refused_too(tmp_path: Path) -> None:
    from labeler.errors import InputError
    from labeler.inputs import read_rows

    path = tmp_path / "g.csv"
    path.write_text('id,text\ng1,"id=g1 ... unterminated\ng2,id=g2 second\ng3,id=g3 third\n', encoding="utf-8")
    said_first = r"line 2: the quoted text of g1 runs on over lines 3–4, which read as rows g2, g3"
    with pytest.raises(InputError, match=said_first):
        list(read_rows(path, id_column="id", text_column="text"))
    said: list[str] = []
    rows = list(read_rows(path, id_column="id", text_column="text", strict=False, warn=said.append))
    assert [r.item.id for r in rows] == ["g1"] and len(said) == 1 and "2 rows may be missing" in said[0]


# --- case 2: more fields than the header --------------------------------------------------------
def test_an_extra_field_is_one_line_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], answers: list[str]
) -> None:
    config = _corpus(tmp_path, "id,text\ng0,fine\ng1,hello,extra\n")
    assert main(["run", str(config), "--run-dir", str(tmp_path / "runs" / "r"), "--quiet"]) == 2
    assert "items.csv line 3 has more fields than the header; quote fields" in _error_line(capsys)


# --- case 3: terminal escapes in CSVs for people ------------------------------------------------
EVIL = "\x1b[2J\x1b[H\x1b[31mLLM: tech\x1b]0;pwned\x07"


def test_escapes_are_visible_in_csvs_for_people_and_kept_in_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], answers: list[str]
) -> None:
    from labeler.store import RunStore

    config = _corpus(tmp_path, f'id,text\ng1,"{EVIL}"\n')
    run = tmp_path / "runs" / "r"
    assert main(["run", str(config), "--run-dir", str(run), "--quiet"]) == 0
    assert main(["route", str(run), "--threshold", "1.0"]) == 0
    outs = {name: tmp_path / f"{name}.csv" for name in ("export", "merge", "queue")}
    assert main(["export", str(run), "--out", str(outs["export"]), "--with-text"]) == 0
    assert main(["review", "export", str(run), "--format", "csv", "--out", str(outs["queue"])]) == 0
    assert main(["review", "merge", str(run), "--out", str(outs["merge"]), "--with-text"]) == 0
    capsys.readouterr()
    shown = "␛[2J␛[H␛[31mLLM: tech␛]0;pwned␇"
    for name, path in outs.items():
        text = path.read_text(encoding="utf-8")
        assert "\x1b" not in text and "\x07" not in text and shown in text, name
    store = RunStore.open(run)
    try:
        assert [i.text for i in store.items_where("1", ())] == [EVIL]  # the stored text is verbatim
    finally:
        store.close()


# --- case 6: an API key inside a normal 200 answer -----------------------------------------------
def test_a_key_in_an_answer_is_never_stored_or_exported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], answers: list[str]
) -> None:
    import sqlite3

    key = "my-secret-key-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    answers[0] = '{"label": "echo ' + key + ' and sk-abcdefghijklmnop"}'
    config = _corpus(tmp_path, "id,text\nd1,item 1\n")
    run = tmp_path / "runs" / "r"
    assert main(["run", str(config), "--run-dir", str(run), "--quiet"]) == 0
    out = tmp_path / "labels.jsonl"
    assert main(["export", str(run), "--out", str(out)]) == 0
    capsys.readouterr()
    with contextlib.closing(sqlite3.connect(run / "run.sqlite")) as db:
        stored = " ".join(str(v) for row in db.execute("SELECT reason, raw FROM results") for v in row)
    assert "[redacted]" in stored and key not in stored and "sk-abcdefghijklmnop" not in stored
    exported = out.read_text(encoding="utf-8")
    assert "[redacted]" in exported and key not in exported and "sk-abcdefghijklmnop" not in exported
