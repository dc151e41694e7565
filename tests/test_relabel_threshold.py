"""`labeler relabel --target-accuracy`: the threshold for a target accuracy is stored in the relabeled run and a
plain `labeler route` uses it, saying where it came from. A synthetic run whose confidences are known: items
1..6 answered right with confidence 0.99, 0.97, 0.95, 0.9, 0.6, 0.55, so for 95% accuracy on the rest the
top four are kept (mean 0.9525; with the fifth, 0.882): threshold 0.9, the last two reviewed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from fakes import FakeBackend, completion, item_number, tok
from test_runner import LABELS, _patch_backends, make_task

from labeler.cli import main
from labeler.errors import TuneError
from labeler.label import pipeline
from labeler.store import RunStore
from labeler.tune.relabel import format_relabel, relabel_run
from labeler.types import Request

CONF = (0.99, 0.97, 0.95, 0.9, 0.6, 0.55)
GOLD = ["business", "sport", "tech", "business", "sport", "tech"]


def backend() -> FakeBackend:
    def answer(request: Request) -> object:
        n = item_number(request)
        label, p = GOLD[n - 1], CONF[n - 1]
        top = {lab: (p if lab == label else (1 - p) / 2) for lab in LABELS}
        return completion(
            json.dumps({"label": label}), logprobs=[tok('{"label": "', 1.0), tok(label, p, top), tok('"}', 1.0)]
        )

    return FakeBackend(answer)  # type: ignore[arg-type]


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A labeled run with a tuning that keeps the run's own task (no correction, no calibrator)."""
    task = make_task(tmp_path, GOLD)
    _patch_backends(monkeypatch, lambda name: backend())
    run_dir, _ = asyncio.run(pipeline.start_run(task, run_dir=tmp_path / "runs" / "base", show_progress=False))
    store = RunStore.open(run_dir)
    store.put_tuning({"tuned_toml": str(task.path), "items": {"n": 0}, "oof": {"ids": []}, "calibrator": None})
    store.close()
    monkeypatch.chdir(tmp_path)
    return run_dir


def test_the_threshold_for_the_target_is_stored_and_route_uses_it(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = relabel_run(run_dir, target_accuracy=0.95, show_progress=False)
    assert out["asked"] == 0 and out["routing"]["stored"] == pytest.approx(0.9)
    assert {r["target"] for r in out["routing"]["rows"]} == {0.95, 0.9, 0.85, 0.98}  # the default table stays
    text = format_relabel(out)
    assert "threshold 0.900 stored in runs/base-tuned; labeler route runs/base-tuned uses it" in text
    new = Path(out["run_dir"])
    store = RunStore.open(new)
    assert store.task().routing.low_confidence == pytest.approx(0.9)
    assert store.manifest["routing_threshold"]["source"] == "labeler relabel --target-accuracy 0.95"
    assert store.manifest["config"].get("routing", {}).get("low_confidence") is None  # the snapshot stays
    store.close()

    capsys.readouterr()
    assert main(["route", str(new), "--audit-fraction", "0"]) == 0
    assert "threshold 0.900 from labeler relabel --target-accuracy 0.95" in capsys.readouterr().out
    store = RunStore.open(new)
    low = {e.item_id for e in store.queue() if "low_confidence" in e.reasons}
    store.close()
    assert low == {"d005", "d006"}  # confidence 0.6 and 0.55: below 0.9

    assert main(["route", str(new), "--audit-fraction", "0", "--threshold", "0.58"]) == 0
    assert "from labeler relabel" not in capsys.readouterr().out  # an explicit threshold needs no source
    store = RunStore.open(new)
    assert {e.item_id for e in store.queue() if "low_confidence" in e.reasons} == {"d006"}
    store.close()


def test_a_target_out_of_reach_stores_nothing(run_dir: Path) -> None:
    out = relabel_run(run_dir, target_accuracy=0.999, show_progress=False)
    assert out["routing"]["stored"] is None
    line = format_relabel(out).splitlines()[-1]
    assert line.startswith("99.9% accuracy on the rest is out of reach") and "no threshold stored" in line
    store = RunStore.open(Path(out["run_dir"]))
    assert store.routing_threshold() is None and store.task().routing.low_confidence == 0.6  # the default
    assert "routing_threshold" not in store.manifest
    store.close()


def test_without_a_target_accuracy_only_a_suggestion(run_dir: Path) -> None:
    out = relabel_run(run_dir, show_progress=False)
    assert "stored" not in out["routing"]
    assert "labeler route runs/base-tuned --threshold" in format_relabel(out).splitlines()[-1]
    store = RunStore.open(Path(out["run_dir"]))
    assert store.routing_threshold() is None
    store.close()
    with pytest.raises(TuneError, match="--target-accuracy must be"):
        relabel_run(run_dir, target_accuracy=95, show_progress=False)
