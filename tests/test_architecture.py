"""The shape of the package, checked: SQL only in the store, no import cycles, small modules, a light
command line, the public API, and two cross-stage promises (calibration survives a resume; the final
dataset and the evaluation reference agree on every item)."""

from __future__ import annotations

import ast
import json
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes import FakeBackend, completion, item_number, json_answer
from test_runner import _patch_backends, json_logprobs, make_task

import labeler
from labeler.confidence.run import calibrate_path
from labeler.evaluate.gather import gather
from labeler.export import export_run
from labeler.label import pipeline
from labeler.store import RunStore
from labeler.store.rows import Review
from labeler.types import Request

PACKAGE = Path(labeler.__file__).parent
MAX_LINES = 450


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path


def test_only_the_store_speaks_sql() -> None:
    offenders = []
    for name, path in _modules():
        if name.startswith("labeler.store"):
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if any(s in line for s in ("conn.execute", ".executemany(", ".executescript(", "import sqlite3")):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{n}: {line.strip()}")
    assert offenders == []


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every labeler module `name` imports, anywhere in the file (lazy imports inside functions too), with
    the packages that importing a submodule runs."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            parts = t.split(".")
            out.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))  # packages run on the way
    out.discard(name)
    return {m for m in out if m in known and not name.startswith(m + ".")}


def test_no_import_cycles() -> None:
    modules = dict(_modules())
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for dep in sorted(graph[m]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*stack[stack.index(dep) :], dep]))
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert cycles == []


def test_modules_are_small_enough_to_read_in_one_sitting() -> None:
    long = {
        str(p.relative_to(PACKAGE.parent)): n
        for _, p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_building_the_command_line_imports_no_heavy_library() -> None:
    code = (
        "import sys, labeler.cli as c; c.build_parser();"
        "print(','.join(m for m in ('numpy','scipy','sklearn','matplotlib','pyarrow','pandas','openai','jinja2')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


PUBLIC_API = {
    "__version__",
    "LabelerError",
    "TaskConfig",
    "load_config",
    "RunStore",
    "ItemRecord",
    "records",
    "HumanLabel",
    "decide",
    "read_humans",
    "start_run",
    "resume_run",
    "route_run",
    "calibrate_path",
    "export_run",
    "evaluate_run",
}


def test_public_api() -> None:
    assert set(labeler.__all__) == PUBLIC_API
    for name in labeler.__all__:
        assert getattr(labeler, name) is not None
    with pytest.raises(AttributeError):
        _ = labeler.not_a_name  # type: ignore[attr-defined]


# --- cross-stage promises ------------------------------------------------------------------------
def _model(said: dict[int, str], p: dict[int, float]) -> FakeBackend:
    labels = ("business", "sport", "tech")

    def answer(request: Request) -> object:
        n = item_number(request)
        other = next(lab for lab in labels if lab != said[n])
        return completion(json_answer(said[n]), logprobs=json_logprobs(said[n], p[n], other))

    return FakeBackend(answer)  # type: ignore[arg-type]


async def test_resume_after_calibrate_keeps_the_calibrated_confidence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(3)
    labels = ("business", "sport", "tech")
    gold = [rng.choice(labels) for _ in range(80)]
    # right with probability 0.9 when confident (0.9), 0.5 when not (0.55): a signal worth calibrating
    p = {n: rng.choice((0.9, 0.55)) for n in range(1, 81)}
    said = {
        n: g if rng.random() < (0.9 if p[n] == 0.9 else 0.5) else labels[(labels.index(g) + 1) % 3]
        for n, g in enumerate(gold, 1)
    }
    task = make_task(tmp_path, gold, model={"concurrency": 1})
    _patch_backends(monkeypatch, lambda name: _model(said, p))
    run_dir, _ = await pipeline.start_run(task, run_dir=tmp_path / "runs" / "r", limit=60, show_progress=False)
    reports = calibrate_path(run_dir, methods=["ensemble"])
    assert reports[0].skipped is None
    store = RunStore.open(run_dir)
    before = {c.item_id: c.calibrated for c in store.combined_rows()}
    store.close()
    assert len(before) == 60 and all(v is not None for v in before.values())

    await pipeline.resume_run(run_dir, show_progress=False)  # labels the other 20 and combines again
    store = RunStore.open(run_dir)
    after = {c.item_id: c.calibrated for c in store.combined_rows()}
    store.close()
    assert len(after) == 80
    assert {i: after[i] for i in before} == pytest.approx(before)  # nothing calibrated was lost
    assert all(after[i] is not None for i in set(after) - set(before))  # the new items are calibrated too


async def test_final_dataset_and_evaluation_reference_agree_on_every_item(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    labels = ("business", "sport", "tech")
    n = 40
    gold = [labels[k % 3] for k in range(n)]
    said = {k: labels[(k * 7) % 3] for k in range(1, n + 1)}
    task = make_task(tmp_path, gold, model={"concurrency": 1})
    _patch_backends(monkeypatch, lambda name: _model(said, dict.fromkeys(said, 0.7)))
    run_dir, _ = await pipeline.start_run(task, run_dir=tmp_path / "runs" / "r", show_progress=False)
    ids = [f"d{k:03d}" for k in range(1, n + 1)]
    reviews = []
    for k, i in enumerate(ids):  # gold of item k is labels[k % 3]
        a, b = labels[(k + 1) % 3], labels[(k + 2) % 3]
        if k % 4 == 0:  # ann, bob and gold all differ: a three-way tie, which gold settles
            reviews += [Review(i, "ann", a, source="csv"), Review(i, "bob", b, source="csv")]
        elif k % 4 == 1:  # the same tie, settled by an adjudication
            reviews += [Review(i, "ann", a, source="csv"), Review(i, "bob", b, source="csv")]
            reviews.append(Review(i, "lead", b, source="adjudication", adjudication=True))
        elif k % 4 == 2:  # two reviewers outvote gold
            reviews += [Review(i, r, a, source="csv") for r in ("ann", "bob")]
    store = RunStore.open(run_dir)
    store.put_reviews(reviews)
    store.close()

    out = tmp_path / "final.jsonl"
    export_run(run_dir, out)
    exported = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    inputs = gather(run_dir)
    reference = dict(zip(inputs.ids, inputs.reference, strict=True))
    assert set(exported) == set(reference) == set(ids)
    for i in ids:
        assert exported[i]["label"] == reference[i], i
    # and the rule is the documented one
    k = {i: n for n, i in enumerate(ids)}
    for i in ids:
        case, g = k[i] % 4, gold[k[i]]
        if case == 0:
            assert (exported[i]["source"], exported[i]["tie"], reference[i]) == ("human", True, g)
        elif case == 1:
            assert (exported[i]["source"], reference[i]) == ("adjudicated", labels[(k[i] + 2) % 3])
        elif case == 2:
            assert (exported[i]["source"], reference[i]) == ("human", labels[(k[i] + 1) % 3])
        else:
            assert (exported[i]["source"], reference[i]) == ("gold", g)
