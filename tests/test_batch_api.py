"""The OpenAI Batch API path against a local server that implements the files and batches endpoints
(tests/batch_stub.py): a whole run, the split to the file limits, failed requests going through the
normal path, K items a line, cancel, and a run killed at each stage and resumed with nothing lost and
nothing submitted twice (the labeler in its own process, SIGKILLed by itself at the stage)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from batch_stub import ScaleStub
from openai_stub import write_task

from labeler.cli import batch as batch_cli
from labeler.config import load_config
from labeler.label import pipeline
from labeler.store import RunStore

pytestmark = pytest.mark.integration

LABELS = ("business", "politics", "sport", "tech")
ITEMS = [(f"b{n:03d}", LABELS[n * 3 % 4]) for n in range(40)]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_BASE_URL", "LABELER_CACHE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def stub() -> Iterator[ScaleStub]:
    with ScaleStub() as s:
        yield s


def batch_task(
    root: Path, base_url: str, *, items: list[tuple[str, str]] = ITEMS, batch: str = "", model: str = ""
) -> Path:
    config = write_task(
        root,
        base_url=base_url,
        items=items,
        labels=LABELS,
        model=f"price_input_per_1m = 1000000.0\nprice_output_per_1m = 0.0\n{model}",
        retry="max_attempts = 2\ninitial_wait = 0.01\nmax_wait = 0.02",
    )
    with config.open("a", encoding="utf-8") as fh:
        fh.write(f"\n[batch]\nenabled = true\npoll_seconds = 0.05\n{batch}\n")
    return config


def stored(run_dir: Path) -> dict[str, tuple[str, str | None, float]]:
    conn = sqlite3.connect(run_dir / "run.sqlite")
    try:
        return {i: (s, lab, c) for i, s, lab, c in conn.execute("SELECT item_id, status, label, cost FROM results")}
    finally:
        conn.close()


def all_labeled(run_dir: Path, items: list[tuple[str, str]] = ITEMS) -> bool:
    got = stored(run_dir)
    return len(got) == len(items) and all(got[k][:2] == ("labeled", topic) for k, topic in items)


async def test_a_run_through_the_batch_api_at_half_price(tmp_path: Path, stub: ScaleStub) -> None:
    task = load_config(batch_task(tmp_path / "t", stub.base_url, batch="max_requests_per_file = 15"))
    run_dir, summary = await pipeline.start_run(task, run_dir=tmp_path / "runs" / "r", show_progress=False)
    assert summary.counts == {"labeled": 40}
    assert all_labeled(run_dir)
    assert (stub.uploads, stub.created) == (3, 3)  # 15 + 15 + 10 requests
    assert sorted(stub.answered.values()) == [1] * 40 and sum(stub.chat.values()) == 40  # no online request
    store = RunStore.open(run_dir)
    parts = store.batch_parts()
    store.close()
    assert [p.requests for p in parts] == [15, 15, 10] and {p.state for p in parts} == {"ingested"}
    # cost at half the list price: the stub counts a prompt's words as its tokens, $1 per token here
    body = json.loads(Path(parts[0].path).read_text().splitlines()[0])["body"]
    words = sum(len(m["content"].split()) for m in body["messages"])
    assert stored(run_dir)["b000"][2] == pytest.approx(0.5 * words)

    # a second run over the same corpus pays nothing: every answer is in the cache, no batch is made
    _, s2 = await pipeline.start_run(task, run_dir=tmp_path / "runs" / "r2", show_progress=False)
    assert s2.cached == 40 and (stub.uploads, stub.created) == (3, 3)


async def test_parts_stay_within_the_byte_limit(tmp_path: Path, stub: ScaleStub) -> None:
    task = load_config(batch_task(tmp_path / "t", stub.base_url, batch="max_bytes_per_file = 4096"))
    run_dir, _ = await pipeline.start_run(task, run_dir=tmp_path / "runs" / "r", show_progress=False)
    assert all_labeled(run_dir)
    store = RunStore.open(run_dir)
    parts = store.batch_parts()
    store.close()
    assert len(parts) > 1 and all(0 < Path(p.path).stat().st_size == p.bytes <= 4096 for p in parts)
    assert sum(p.requests for p in parts) == 40


async def test_failed_requests_go_through_the_normal_path(tmp_path: Path) -> None:
    with ScaleStub(fail_ids=frozenset({"p1-3", "p1-7"})) as stub:
        task = load_config(batch_task(tmp_path / "t", stub.base_url))
        run_dir, summary = await pipeline.start_run(task, run_dir=tmp_path / "runs" / "r", show_progress=False)
        assert summary.counts == {"labeled": 40} and all_labeled(run_dir)
        online = {k for k, n in stub.online.items() if n}  # failed in the batch's error file, then asked online
        assert online == {ITEMS[2][0], ITEMS[6][0]} and sum(stub.online.values()) == 2
        assert max(stub.answered.values()) == 1 and stub.created == 1


async def test_k_items_a_line_and_missing_ones_asked_alone(tmp_path: Path) -> None:
    with ScaleStub(drop_ids=frozenset({"b005"}), bad_ids=frozenset({"b011"})) as stub:
        task = load_config(batch_task(tmp_path / "t", stub.base_url, model="items_per_request = 10"))
        run_dir, _ = await pipeline.start_run(task, run_dir=tmp_path / "runs" / "r", show_progress=False)
        assert all_labeled(run_dir)
        assert sorted(stub.answered.values()) == [1] * 4  # 40 items in 4 requests
        assert stub.chat["b005"] == 2 and stub.chat["b011"] == 2 and stub.chat["b000"] == 1
        assert {k for k, n in stub.online.items() if n} == {"b005", "b011"}  # asked alone, online
        costs = stored(run_dir)
        assert costs["b005"][2] > costs["b004"][2] > 0  # its share of the batch line, and its own request


async def test_cancel_then_resume_ingests_what_was_answered_and_plans_the_rest(tmp_path: Path) -> None:
    with ScaleStub() as stub:
        stub.hold.set()  # the batch stays in progress
        task = load_config(batch_task(tmp_path / "t", stub.base_url, batch="wait = false"))
        run_dir, summary = await pipeline.start_run(task, run_dir=tmp_path / "runs" / "r", show_progress=False)
        assert summary.counts == {} and stub.created == 1
        lines = await pipeline.cancel_run(run_dir)
        assert len(lines) == 1 and "cancelling" in lines[0]
        stub.hold.clear()
        await asyncio.sleep(0.3)  # the stub finishes cancelling: nothing answered
        stub.hold.set()  # the next batch stays in progress too
        resumed = await pipeline.resume_run(run_dir, show_progress=False)  # ingests the cancelled, plans anew
        assert resumed.counts == {} and stub.created == 2  # the cancelled batch's items went into a new one
        stub.hold.clear()
        await asyncio.sleep(0.3)
        resumed = await pipeline.resume_run(run_dir, show_progress=False)  # collects it
        assert resumed.counts == {"labeled": 40} and all_labeled(run_dir)
        assert max(stub.answered.values()) == 1


# --- multi_label and spans: K items a request, online and through the Batch API ------------------------
KIND_ITEMS = {
    "multi_label": [(f"m{n:02d}", f"id=m{n:02d} topics={','.join(LABELS[j] for j in range(4) if (n >> j) & 1)}")
                    for n in range(12)],
    "spans": [(f"s{n:02d}", f"id=s{n:02d} span=Zoë{n}/PER met span=Köln/LOC 🎉 and span=Ada/PER") for n in range(12)],
}


def kind_task(root: Path, base_url: str, kind: str, *, batch: bool) -> Path:
    from fakes import write_csv
    from fakes import write_task as write_config

    root.mkdir(parents=True, exist_ok=True)
    write_csv(root / "items.csv", [{"id": k, "text": t} for k, t in KIND_ITEMS[kind]])
    labels = LABELS if kind == "multi_label" else ("PER", "LOC")
    model = {"base_url": base_url, "model": "stub-model", "items_per_request": 4, "price_input_per_1m": 1e6}
    sections: dict[str, dict[str, object]] = {"retry": {"max_attempts": 2, "initial_wait": 0.01, "max_wait": 0.02}}
    if batch:
        sections["batch"] = {"enabled": True, "poll_seconds": 0.05}
    return write_config(root, labels=labels, model=model, task={"type": kind}, sections=sections,
                        template="[[system]]\nAnnotate.\n[[user]]\n{{ text }}\n")


def truth_of(kind: str, text: str) -> list[object]:
    """What the stub answers for an item, aligned by hand: topics in label order, or each span's offsets."""
    import re

    if kind == "multi_label":
        return [t for t in text.split("topics=")[1].split(",") if t]
    spans = []
    for m in re.finditer(r"span=(\S+?)/(\w+)", text):
        start = m.start(1)  # the word the quote names: its first occurrence in the text is inside its span=...
        spans.append({"start": start, "end": m.end(1), "type": m.group(2), "text": m.group(1)})
    return sorted(spans, key=lambda d: (d["start"], d["end"]))


@pytest.mark.parametrize("kind", ["multi_label", "spans"])
@pytest.mark.parametrize("batch", [False, True], ids=["online", "batch"])
async def test_task_types_k_items_a_request_online_and_in_batches(tmp_path: Path, kind: str, batch: bool) -> None:
    items = KIND_ITEMS[kind]
    dropped, garbled = items[5][0], items[10][0]
    with ScaleStub(drop_ids=frozenset({dropped}), bad_ids=frozenset({garbled})) as stub:
        task = load_config(kind_task(tmp_path / "t", stub.base_url, kind, batch=batch))
        run_dir, summary = await pipeline.start_run(task, run_dir=tmp_path / "runs" / "r", show_progress=False)
        assert summary.counts == {"labeled": 12} and summary.dropped == 0
        got = stored(run_dir)
        assert {k: json.loads(str(got[k][1])) for k, _ in items} == {k: truth_of(kind, t) for k, t in items}
        assert stub.chat[dropped] == 2 and stub.chat[garbled] == 2 and stub.chat[items[0][0]] == 1
        assert {k for k, n in stub.online.items() if n} == ({dropped, garbled} if batch else {k for k, _ in items})
        if batch:
            assert sorted(stub.answered.values()) == [1, 1, 1] and stub.created == 1  # 12 items in 3 lines
            assert got[items[0][0]][2] == pytest.approx(got[items[1][0]][2])  # shares of one line's cost
            assert got[dropped][2] > got[items[4][0]][2] > 0  # its share, and its own request at the list price


def test_the_cli_commands(tmp_path: Path, stub: ScaleStub, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    task = load_config(batch_task(tmp_path / "t", stub.base_url))
    run_dir, _ = asyncio.run(pipeline.start_run(task, run_dir=tmp_path / "runs" / "r", show_progress=False))
    parser = argparse.ArgumentParser()
    batch_cli.register(parser.add_subparsers())
    args = parser.parse_args(["batches", str(run_dir)])
    assert args.fn(args) == 0
    assert "part 1 (default): 40 requests" in capsys.readouterr().out
    args = parser.parse_args(["cancel", str(run_dir)])
    assert args.fn(args) == 0
    assert "no batch is running" in capsys.readouterr().out


# --- killed at each stage, then resumed ---------------------------------------------------------------
KILLER = """
import os, signal, sys
from labeler.label import batch_api
stage = sys.argv[1]
seen = batch_api.reached
def reached(name, part):
    seen(name, part)
    if name == stage:
        os.kill(os.getpid(), signal.SIGKILL)
batch_api.reached = reached
from labeler.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize(
    "stage",
    [
        "planned",  # before upload: the file is written and recorded
        "uploaded",  # after the upload, before its file id is recorded
        "submitted",  # after the batch is created, before its id is recorded
        "polled",  # while it is in progress
        "ended",  # after completion, before the output is ingested
    ],
)
def test_killed_at_each_stage_then_resumed(tmp_path: Path, stage: str) -> None:
    with ScaleStub() as stub:
        if stage == "polled":
            stub.hold.set()
        config = batch_task(tmp_path / "t", stub.base_url)
        run_dir = tmp_path / "runs" / "r"
        env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_BASE_URL", "LABELER_CACHE")}
        killed = subprocess.run(
            [sys.executable, "-c", KILLER, stage, "run", str(config), "--run-dir", str(run_dir), "--quiet"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        before = (stub.uploads, stub.created)
        assert before == {"planned": (0, 0), "uploaded": (1, 0)}.get(stage, (1, 1))
        stub.hold.clear()
        resumed = subprocess.run(
            [sys.executable, "-m", "labeler.cli", "resume", str(run_dir), "--quiet"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert resumed.returncode == 0, resumed.stderr
        assert all_labeled(run_dir), "an item was lost"
        assert (stub.uploads, stub.created) == (1, 1), "a part was uploaded or submitted twice"
        assert sorted(stub.answered.values()) == [1] * 40, "a request was answered twice"
        assert sum(stub.chat.values()) == 40 and not any(stub.online.values()), "an item was asked online as well"
        conn = sqlite3.connect(run_dir / "run.sqlite")
        rows = [r[0] for r in conn.execute("SELECT item_id FROM results")]
        conn.close()
        assert sorted(rows) == sorted(k for k, _ in ITEMS)
