"""`labeler eval RUN_DIR` for every task type: the task type (registry.for_task) picks the pipeline.

    single        labeler.evaluate.evaluate_run: gather -> build_metrics -> report.write_report (as ever)
    multi_label   annotations.gather_annotations -> annotation_metrics.build_annotation_metrics
    spans            -> annotation_report.write_report

This module, not the package's `__init__`, is where evaluation meets the registry: the task types' own
`evaluate` methods use labeler.evaluate's maths (intervals, classification), so a registry import reachable
from the package would close an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from labeler.store import RunStore
from labeler.tasktypes.registry import for_task

Extra = Callable[[], dict[str, Any]] | None


def _single(run_dir: Path, human_file: Path | None, out: Path, n_boot: int, seed: int, extra: Extra) -> dict[str, Any]:
    from labeler import evaluate

    more = extra() if extra else None
    return evaluate.evaluate_run(run_dir, human_file=human_file, out_dir=out, n_boot=n_boot, seed=seed, extra=more)[1]


def _annotations(
    run_dir: Path, human_file: Path | None, out: Path, n_boot: int, seed: int, extra: Extra
) -> dict[str, Any]:
    """`extra` gives the annotators' section where it applies (multi-label; spans are not aggregated)."""
    from labeler.evaluate.annotation_metrics import build_annotation_metrics
    from labeler.evaluate.annotation_report import summary_sentences, write_report
    from labeler.evaluate.annotations import gather_annotations

    metrics = build_annotation_metrics(gather_annotations(run_dir, human_file=human_file), n_boot=n_boot, seed=seed)
    metrics |= {k: v for k, v in (extra() if extra else {}).items() if v is not None}
    write_report(metrics, out)
    return metrics | {"summary": summary_sentences(metrics)}


PIPELINES: dict[str, Callable[[Path, Path | None, Path, int, int, Extra], dict[str, Any]]] = {
    "single": _single,
    "multi_label": _annotations,
    "spans": _annotations,
}


def evaluate_run(
    run_dir: Path,
    *,
    human_file: Path | None = None,
    out_dir: Path | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    extra: Extra = None,
) -> tuple[Path, dict[str, Any]]:
    """Evaluate the run in run_dir and write its report (default run_dir/report). Returns (report dir, metrics).
    `extra` gives further sections of the report when called (the annotators' table)."""
    store = RunStore.open(run_dir)
    try:
        kind = for_task(store.task())
    finally:
        store.close()
    out = out_dir or run_dir / "report"
    return out, PIPELINES[kind.name](run_dir, human_file, out, n_boot, seed, extra)
