"""SIGKILL `labeler run` mid-run, SIGKILL the resume too, then resume to the end: every item ends
labeled exactly once, and nothing that was stored before a kill is asked again (only answers in
flight, or answered but not yet committed, are re-sent: "paid twice", printed per kill).

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
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai_stub import write_task

pytestmark = pytest.mark.integration

STUB = Path(__file__).with_name("openai_stub.py")
LABELS = ("business", "politics", "sport", "tech")
ITEMS = [(f"c{n:03d}", LABELS[n * 7 % len(LABELS)]) for n in range(300)]
KILL_AT = (60, 150)  # results stored when `run`, then the first `resume`, is killed


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


def _kill_when_stored(proc: subprocess.Popen[bytes], run_dir: Path, n: int) -> None:
    deadline = time.monotonic() + 60
    while len(stored(run_dir)) < n:
        assert proc.poll() is None, "the process ended before it could be killed"
        assert time.monotonic() < deadline, f"{n} results not stored within 60 s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    time.sleep(0.2)  # let the stub log requests that were on the wire at the kill


def test_sigkill_then_resume(tmp_path: Path, stub_process: tuple[str, Path]) -> None:
    """Kill `labeler run` after KILL_AT[0] results, kill the resume after KILL_AT[1], resume to the end.
    Prints what a user pays for the kills; asserts that none loses or relabels an item."""
    base_url, log = stub_process
    config = write_task(
        tmp_path / "task", base_url=base_url, items=ITEMS, labels=LABELS, model="concurrency = 4\ntimeout = 10"
    )
    run_dir = tmp_path / "runs" / "crash"
    cmd = [sys.executable, "-m", "labeler.cli"]
    first = [*cmd, "run", str(config), "--run-dir", str(run_dir), "--quiet"]
    again = [*cmd, "resume", str(run_dir), "--quiet"]

    labeled_twice = 0
    for n, argv in zip(KILL_AT, (first, again), strict=True):
        before = stored(run_dir)
        asked_before = len(logged_keys(log))
        _kill_when_stored(subprocess.Popen(argv, env=_env(), cwd=tmp_path), run_dir, n)
        at_kill = stored(run_dir)
        assert n <= len(at_kill) < len(ITEMS)
        assert {status for status, _ in at_kill.values()} == {"labeled"}
        assert at_kill.items() >= before.items(), "a stored result changed or vanished"
        # labeled twice: stored before this process started, and asked again by it
        labeled_twice += len(set(logged_keys(log)[asked_before:]) & set(before))

    asked_before = logged_keys(log)
    at_kill = stored(run_dir)
    resumed = subprocess.run(again, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr

    rows = result_rows(run_dir)
    final = stored(run_dir)
    asked_after = logged_keys(log)[len(asked_before) :]
    labeled_twice += len(set(asked_after) & set(at_kill)) + (len(rows) - len(set(rows)))
    lost = sum(final.get(key) != ("labeled", topic) for key, topic in ITEMS)
    paid_twice = sum(count - 1 for count in Counter(logged_keys(log)).values())  # requests beyond one per item
    print(
        f"\ncrash test: {len(KILL_AT)} SIGKILLs over {len(ITEMS)} items: items lost {lost}, labeled twice "
        f"{labeled_twice}, paid twice {paid_twice} ({paid_twice / len(KILL_AT):.1f} requests per kill)"
    )
    assert lost == 0, "an item was never labeled"
    assert labeled_twice == 0, "an item stored before a kill was asked again"
    assert sorted(rows) == sorted(key for key, _ in ITEMS), "every item exactly once"
    assert len(asked_after) == len(set(asked_after)), "an item was asked twice on resume"
    never_asked = {key for key, _ in ITEMS} - set(asked_before)
    assert never_asked <= set(asked_after), "resume skipped an item that was never asked"
    in_flight = set(asked_before) - set(at_kill)
    assert set(asked_after) - never_asked <= in_flight
    assert paid_twice <= len(KILL_AT) * 4 * 3, "more re-asked per kill than were in flight (4) or uncommitted"
