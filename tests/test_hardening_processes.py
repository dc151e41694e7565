"""Two labeler processes at once, against the scripted stub in a third: two `labeler resume` of one run
(the second is refused with one line naming the first's PID, and nothing is paid twice), and two runs
that share one cache.sqlite (both finish, every item labeled once in each)."""

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
CLI = [sys.executable, "-m", "labeler.cli"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_BASE_URL", "LABELER_CACHE")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _start_stub(tmp_path: Path, latency: float) -> tuple[subprocess.Popen[str], str, Path]:
    log = tmp_path / "requests.jsonl"
    proc = subprocess.Popen(
        [sys.executable, str(STUB), "--port", "0", "--latency", str(latency), "--log", str(log)],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("listening on "), f"stub did not start: {line!r}"
    return proc, line.split()[-1], log


@pytest.fixture
def stub(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, Path]]:
    proc, base_url, log = _start_stub(tmp_path, getattr(request, "param", 0.03))
    try:
        yield base_url, log
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def _labels(run_dir: Path) -> dict[str, str | None]:
    db = run_dir / "run.sqlite"
    if not db.exists():
        return {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return {i: lab for i, lab in conn.execute("SELECT item_id, label FROM results WHERE status = 'labeled'")}
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()


def _asked(log: Path) -> Counter[str]:
    return Counter(json.loads(line)["key"] for line in log.read_text(encoding="utf-8").splitlines())


@pytest.mark.parametrize("stub", [0.05], indirect=True)
def test_a_second_resume_of_a_running_run_is_refused_naming_the_pid(tmp_path: Path, stub: tuple[str, Path]) -> None:
    base_url, log = stub
    items = [(f"p{n:03d}", LABELS[n % 4]) for n in range(400)]  # 10 s of labeling: the holder outlives the test
    config = write_task(tmp_path / "task", base_url=base_url, items=items, labels=LABELS, model="concurrency = 2")
    run_dir = tmp_path / "runs" / "r"
    first = subprocess.run(
        [*CLI, "run", str(config), "--run-dir", str(run_dir), "--limit", "1", "--quiet"],
        env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr

    holder = subprocess.Popen([*CLI, "resume", str(run_dir), "--quiet"], env=_env(), cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while len(_labels(run_dir)) < 5:  # the holder is labeling
            assert holder.poll() is None and time.monotonic() < deadline, "the first resume did not get going"
            time.sleep(0.01)
        second = subprocess.run(
            [*CLI, "resume", str(run_dir), "--quiet"], env=_env(), cwd=tmp_path, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        assert holder.poll() is None, "the holder must still be running for this test to mean anything"
    finally:
        holder.send_signal(signal.SIGTERM)  # graceful: the answers in flight are stored, then it stops
        code = holder.wait(timeout=60)

    assert second.returncode == 2
    err = second.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"in use by another labeler process (PID {holder.pid})" in err
    assert code in (0, 130)

    # the lock went with the holder: a resume finishes the run, and no item was ever paid for twice
    last = subprocess.run(
        [*CLI, "resume", str(run_dir), "--quiet"], env=_env(), cwd=tmp_path, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert last.returncode == 0, last.stderr
    assert _labels(run_dir) == dict(items)
    asked = _asked(log)
    assert set(asked) == {key for key, _ in items} and set(asked.values()) == {1}, "an item was paid for twice"


@pytest.mark.parametrize("stub", [0.002], indirect=True)
def test_two_runs_sharing_one_cache_both_finish(tmp_path: Path, stub: tuple[str, Path]) -> None:
    base_url, log = stub
    items = [(f"s{n:03d}", LABELS[n * 3 % 4]) for n in range(400)]
    config = write_task(tmp_path / "task", base_url=base_url, items=items, labels=LABELS, model="concurrency = 8")
    runs = tmp_path / "runs"
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    procs = [
        subprocess.Popen([*CLI, "run", str(config), "--run-dir", str(runs / name), "--quiet"],
                         env=_env(), cwd=tmp_path, text=True, **pipes)
        for name in ("a", "b")
    ]  # fmt: skip
    outcomes = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outcomes, strict=True):
        assert p.returncode == 0, err
        assert "Traceback" not in err
    for name in ("a", "b"):
        assert _labels(runs / name) == dict(items)
    asked = _asked(log)
    assert set(asked) == {key for key, _ in items}
    assert max(asked.values()) <= 2  # at most once per run; the shared cache saves the rest
    conn = sqlite3.connect(runs / "cache.sqlite")
    try:
        assert conn.execute("SELECT COUNT(*) FROM cache").fetchone()[0] == len(items)
    finally:
        conn.close()
