"""SIGKILL `labeler run` mid-run, then `labeler resume`: every item ends labeled exactly once, and
nothing that was stored before the kill is asked again (only answers in flight may be re-sent).

The stub and the labeler each run in their own process, as they would for a user.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai_stub import write_task

pytestmark = pytest.mark.integration

STUB = Path(__file__).with_name("openai_stub.py")
LABELS = ("business", "politics", "sport", "tech")
ITEMS = [(f"c{n:03d}", LABELS[n * 7 % len(LABELS)]) for n in range(300)]
KILL_AFTER = 60  # results stored


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_BASE_URL", "LABELER_CACHE")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def stub_process(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The stub in its own process with 30 ms latency: (base_url, request log)."""
    log = tmp_path / "requests.jsonl"
    proc = subprocess.Popen(
        [sys.executable, str(STUB), "--port", "0", "--latency", "0.03", "--log", str(log)],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on "), f"stub did not start: {line!r}"
        yield line.split()[-1], log
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def stored(run_dir: Path) -> dict[str, tuple[str, str | None]]:
    """item id -> (status, label) of every result row; {} while the run has no tables yet."""
    db = run_dir / "run.sqlite"
    if not db.exists():
        return {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return {i: (s, lab) for i, s, lab in conn.execute("SELECT item_id, status, label FROM results")}
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()


def result_rows(run_dir: Path) -> list[str]:
    conn = sqlite3.connect(run_dir / "run.sqlite")
    try:
        return [row[0] for row in conn.execute("SELECT item_id FROM results")]
    finally:
        conn.close()


def logged_keys(log: Path) -> list[str]:
    return [json.loads(line)["key"] for line in log.read_text(encoding="utf-8").splitlines()]


def test_sigkill_then_resume(tmp_path: Path, stub_process: tuple[str, Path]) -> None:
    base_url, log = stub_process
    config = write_task(
        tmp_path / "task", base_url=base_url, items=ITEMS, labels=LABELS, model="concurrency = 4\ntimeout = 10"
    )
    run_dir = tmp_path / "runs" / "crash"
    cmd = [sys.executable, "-m", "labeler.cli"]
    run = subprocess.Popen([*cmd, "run", str(config), "--run-dir", str(run_dir), "--quiet"], env=_env(), cwd=tmp_path)

    deadline = time.monotonic() + 60
    while len(stored(run_dir)) < KILL_AFTER:
        assert run.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no results stored within 60 s"
        time.sleep(0.01)
    run.send_signal(signal.SIGKILL)
    assert run.wait(timeout=10) == -signal.SIGKILL

    time.sleep(0.2)  # let the stub log requests that were on the wire at the kill
    at_kill = stored(run_dir)
    asked_before = logged_keys(log)
    assert KILL_AFTER <= len(at_kill) < len(ITEMS)
    assert {status for status, _ in at_kill.values()} == {"labeled"}

    resumed = subprocess.run(
        [*cmd, "resume", str(run_dir), "--quiet"], env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr

    rows = result_rows(run_dir)
    assert sorted(rows) == sorted(key for key, _ in ITEMS), "every item exactly once"
    assert stored(run_dir) == {key: ("labeled", topic) for key, topic in ITEMS}

    asked_after = logged_keys(log)[len(asked_before) :]
    assert not set(asked_after) & set(at_kill), "an item stored before the kill was asked again"
    assert len(asked_after) == len(set(asked_after)), "an item was asked twice on resume"
    never_asked = {key for key, _ in ITEMS} - set(asked_before)
    assert never_asked <= set(asked_after), "resume skipped an item that was never asked"
    in_flight = set(asked_before) - set(at_kill)
    assert set(asked_after) - never_asked <= in_flight
