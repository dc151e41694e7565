"""End to end on the real embedded model: llama-server (built by `labeler setup`) with Gemma-3-270M.

Labels 20 items of the bundled BBC News corpus through the real server, checks labels, confidences
and that no server process is left behind, also after Ctrl-C and after the labeler is SIGKILLed.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labeler.config import load_config
from labeler.label.local import model_file, server_binary
from labeler.label.pipeline import start_run

ROOT = Path(__file__).resolve().parents[1]
TASK = ROOT / "tasks" / "news_topic.toml"

pytestmark = [pytest.mark.local_model, pytest.mark.integration]

if os.environ.get("LABELER_SKIP_LOCAL") == "1":
    pytest.skip("LABELER_SKIP_LOCAL=1", allow_module_level=True)


def llama_servers() -> set[int]:
    """PIDs of running llama-server processes."""
    pids = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if cmd.endswith(b"llama-server"):
                pids.add(int(d.name))
    return pids


@pytest.fixture(autouse=True)
def _needs_setup() -> None:
    assert server_binary() is not None, "llama-server missing: run `labeler setup` (./run.sh test does)"
    assert model_file("gemma3-270m") is not None, "model missing: run `labeler setup`"


def _wait_gone(before: set[int], timeout: float = 15.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = llama_servers() - before
        if not left:
            return left
        time.sleep(0.2)
    return llama_servers() - before


def test_labels_twenty_items_and_shuts_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABELER_CACHE", str(tmp_path / "cache.sqlite"))
    before = llama_servers()
    task = load_config(TASK)
    run_dir, summary = asyncio.run(start_run(task, run_dir=tmp_path / "run", limit=20, show_progress=False))
    assert summary.counts.get("labeled", 0) == 20
    conn = sqlite3.connect(run_dir / "run.sqlite")
    rows = conn.execute(
        "SELECT r.label, r.confidence, r.distributions, i.gold FROM results r JOIN items i ON i.id = r.item_id"
        " WHERE r.status = 'labeled'"
    ).fetchall()
    assert len(rows) == 20
    labels = set(task.label_names)
    correct = 0
    for label, conf, dists, gold in rows:
        assert label in labels
        dist = json.loads(dists)["logprob"]
        assert set(dist) == labels
        assert math.isclose(sum(dist.values()), 1.0, abs_tol=1e-6)
        assert 0.0 < conf <= 1.0 and math.isclose(conf, dist[label])
        assert dist[label] == max(dist.values()) or conf > 0.2  # greedy choice is (near) the top label
        correct += label == gold
    assert correct / 20 > 0.2, "no better than chance (0.2) on 5 topics"
    assert _wait_gone(before) == set(), "llama-server left running after the run"


def _spawn_run(tmp_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LABELER_CACHE": str(tmp_path / "cache.sqlite")}
    return subprocess.Popen(
        [sys.executable, "-m", "labeler.cli", "run", str(TASK), "--run-dir", str(tmp_path / "run"), "--quiet"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for_results(run_dir: Path, proc: subprocess.Popen[bytes], n: int = 3, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            c = sqlite3.connect(run_dir / "run.sqlite", timeout=5)
            got = c.execute("SELECT COUNT(*) FROM results").fetchone()[0]
            c.close()
            if got >= n:
                return
        except sqlite3.Error:
            pass
        time.sleep(0.2)
    raise AssertionError("the run stored no results in time")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_no_orphan_server_after_interrupt_or_kill(tmp_path: Path, sig: signal.Signals) -> None:
    before = llama_servers()
    proc = _spawn_run(tmp_path)
    try:
        _wait_for_results(tmp_path / "run", proc)
        assert llama_servers() - before, "expected the embedded server to be running"
        proc.send_signal(sig)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGINT:
        assert code == 130
        assert b"resume" in proc.stderr.read()  # type: ignore[union-attr]
    assert _wait_gone(before) == set(), f"llama-server left running after {sig.name}"
