"""The pipeline against a scripted OpenAI-compatible server that injects every kind of fault.

The stub's answer for each item is written into the item's text, and the fault plan is fixed, so
every label, every retry and every failure is known before the run.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from openai_stub import OUT_OF_SET, StubServer, write_task

from labeler.cli import main
from labeler.config import load_config
from labeler.label.pipeline import start_run

pytestmark = pytest.mark.integration

LABELS = ("business", "politics", "sport", "tech")
ITEMS = [(f"i{n:02d}", LABELS[n % len(LABELS)]) for n in range(60)]
TOPIC = dict(ITEMS)
MAX_ATTEMPTS = 4
RETRY_AFTER = 0.4
PLAN = {
    "i01": ["429"],
    "i02": ["500", "503"],
    "i03": ["slow"],
    "i04": ["drop"],
    "i05": ["malformed"],
    "i06": ["badlabel"],  # re-asked once, then right
    "i07": ["badlabel", "badlabel"],  # wrong after the re-ask too: failed
    "i08": ["500"] * MAX_ATTEMPTS,  # every attempt fails: failed
    "i09": ["drop", "malformed", "503"],  # right on the last allowed attempt
    "i10": ["429", "slow", "drop"],
}
FAILED = {"i07", "i08"}
RETRY = f"max_attempts = {MAX_ATTEMPTS}\ninitial_wait = 0.01\nmax_wait = 2.0"
MODEL = "timeout = 0.5\nconcurrency = 4"


def results(run_dir: Path) -> list[sqlite3.Row]:
    conn = sqlite3.connect(run_dir / "run.sqlite")
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute("SELECT * FROM results").fetchall()
    finally:
        conn.close()


def cached_completions(runs: Path) -> list[str]:
    conn = sqlite3.connect(runs / "cache.sqlite")
    try:
        return [row[0] for row in conn.execute("SELECT completion FROM cache")]
    finally:
        conn.close()


def new_requests(stub: StubServer, since: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in stub.seen[since:]:
        counts[s.key] = counts.get(s.key, 0) + 1
    return counts


async def test_every_fault_kind(tmp_path: Path, stub_server) -> None:
    stub = stub_server(plan=PLAN, retry_after=RETRY_AFTER, slow_seconds=1.5)
    config = write_task(tmp_path, base_url=stub.base_url, items=ITEMS, labels=LABELS, model=MODEL, retry=RETRY)
    task = load_config(config)
    runs = tmp_path / "runs"

    run_dir, summary = await start_run(task, run_dir=runs / "first", show_progress=False)

    assert dict(summary.counts) == {"labeled": len(ITEMS) - len(FAILED), "failed": len(FAILED)}
    rows = results(run_dir)
    assert sorted(r["item_id"] for r in rows) == sorted(TOPIC), "every item exactly once"
    by_id = {r["item_id"]: r for r in rows}
    for key, topic in ITEMS:
        row = by_id[key]
        if key in FAILED:
            assert row["status"] == "failed" and row["label"] is None and row["reason"]
        else:
            assert (row["status"], row["label"]) == ("labeled", topic), key
            assert row["confidence"] == pytest.approx(stub.label_prob)
    assert by_id["i07"]["reason"].startswith("unparseable after one re-ask")
    assert OUT_OF_SET in by_id["i07"]["raw"]
    assert by_id["i08"]["reason"] == f"gave up after {MAX_ATTEMPTS} attempts: server answered 500"

    # requests: one per unscripted item; scripted ones as many as their faults need
    counts = stub.request_counts()
    expected = {key: 1 for key in TOPIC}
    expected.update({key: len(faults) + 1 for key, faults in PLAN.items()})
    expected.update({"i07": 2, "i08": MAX_ATTEMPTS})
    assert counts == expected
    for key in ("i06", "i07"):
        first, second = stub.requests_for(key)
        assert (first.is_reask, second.is_reask) == (False, True), "an out-of-set answer is re-asked once"
        assert second.messages[-2] == ("assistant", f'{{"label": "{OUT_OF_SET}"}}')
    for key in ("i01", "i10"):
        first, second = stub.requests_for(key)[:2]
        assert first.action == "429"
        assert second.t - first.t >= RETRY_AFTER * 0.95, "retry-after honoured"
    assert by_id["i10"]["attempts"] == 4

    # only answers that parsed are cached: one per labeled item; neither out-of-set answer
    cached = cached_completions(runs)
    assert len(cached) == len(ITEMS) - len(FAILED)
    assert not [c for c in cached if OUT_OF_SET in c]

    # the same config again: only what was not cached is asked (the stub's script has run out, so it
    # now answers those right); then a third run asks nothing at all
    before = len(stub.seen)
    _, summary2 = await start_run(task, run_dir=runs / "second", show_progress=False)
    assert new_requests(stub, before) == {"i06": 1, "i07": 1, "i08": 1}
    assert dict(summary2.counts) == {"labeled": len(ITEMS)}
    assert summary2.cached == len(ITEMS) - 3

    before = len(stub.seen)
    run3, summary3 = await start_run(task, run_dir=runs / "third", show_progress=False)
    assert new_requests(stub, before) == {}
    assert summary3.cached == len(ITEMS)
    assert {r["item_id"]: r["label"] for r in results(run3)} == TOPIC


async def test_self_consistency_uses_n(tmp_path: Path, stub_server) -> None:
    stub = stub_server()
    items = ITEMS[:6]
    config = write_task(
        tmp_path,
        base_url=stub.base_url,
        items=items,
        labels=LABELS,
        model=MODEL,
        retry=RETRY,
        confidence='methods = ["consistency", "logprob"]\nsamples = 3',
    )
    run_dir, summary = await start_run(load_config(config), run_dir=tmp_path / "runs" / "r", show_progress=False)
    assert dict(summary.counts) == {"labeled": len(items)}
    assert sorted(s.n for s in stub.seen) == [1] * len(items) + [3] * len(items)
    for row in results(run_dir):
        dists = json.loads(row["distributions"])
        label = TOPIC[row["item_id"]]
        assert dists["consistency"][label] == 1.0
        assert dists["logprob"][label] == pytest.approx(stub.label_prob)
        assert row["confidence"] == 1.0  # the first configured method


def test_401_aborts_with_one_line_naming_the_key_variable(tmp_path: Path, stub_server, capsys) -> None:
    stub = stub_server(default="401")
    config = write_task(tmp_path, base_url=stub.base_url, items=ITEMS, labels=LABELS, model=MODEL, retry=RETRY)

    code = main(["run", str(config), "--run-dir", str(tmp_path / "runs" / "r"), "--quiet"])

    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "STUB_API_KEY" in err and "401" in err
    assert len(stub.seen) <= 4, "no request after the first 401s (one per worker)"
    assert {s.action for s in stub.seen} == {"401"}


def test_a_server_without_structured_output_stops_the_run_naming_the_fix(
    tmp_path: Path, stub_server, capsys
) -> None:
    stub = stub_server(default="400")
    config = write_task(tmp_path, base_url=stub.base_url, items=ITEMS, labels=LABELS, model=MODEL, retry=RETRY)
    run_dir = tmp_path / "runs" / "r"

    code = main(["run", str(config), "--run-dir", str(run_dir), "--quiet"])

    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "rejected 25 items in a row" in err and "response_format is not supported" in err
    assert 'set model.profile = "plain" in task.toml' in err and f"labeler resume {run_dir}" in err
    assert 25 <= len(stub.seen) <= 25 + 3, "stopped after 25 rejections (plus the other workers' requests)"
    assert {s.action for s in stub.seen} == {"400"}
    assert {r["status"] for r in results(run_dir)} == {"failed"}


def test_an_echoed_api_key_is_redacted_in_the_store_and_on_the_terminal(
    tmp_path: Path, stub_server, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-live-9f8e7d6c5b4a3210ZZ"
    monkeypatch.setenv("STUB_API_KEY", secret)
    stub = stub_server(default="400echo", plan={"i00": ["500echo"] * MAX_ATTEMPTS})
    config = write_task(tmp_path, base_url=stub.base_url, items=ITEMS, labels=LABELS, model=MODEL, retry=RETRY)
    run_dir = tmp_path / "runs" / "r"

    code = main(["run", str(config), "--run-dir", str(run_dir), "--quiet"])

    out, err = capsys.readouterr()
    assert code == 2 and "[redacted]" in err
    assert secret not in out + err
    rows = results(run_dir)
    reasons = [r["reason"] for r in rows]
    assert any("Authorization: Bearer [redacted]" in reason for reason in reasons)
    assert not [r for r in rows if secret in (r["reason"] or "") or secret in (r["raw"] or "")]
    dumped = "\n".join((run_dir / "run.sqlite").read_bytes().decode("latin-1").splitlines())
    assert secret not in dumped
