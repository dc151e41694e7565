"""Evaluation: gather a run's LLM labels and human labels, measure the error structure, write the report.

    gather(run_dir, human_file)  ->  EvalInputs         (labeler.evaluate.gather)
    build_metrics(inputs)        ->  metrics dict       (labeler.evaluate.measure)
    write_report(metrics, dir)   ->  report.md/.html    (labeler.evaluate.report)

for single-label runs; `labeler.evaluate.run.evaluate_run` (what `labeler eval` calls) evaluates a run of any
task type, multi-label and span runs through annotations -> annotation_metrics -> annotation_report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def evaluate_run(
    run_dir: Path,
    *,
    human_file: Path | None = None,
    out_dir: Path | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    extra: dict[str, Any] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """`extra`: more sections of the metrics dict, e.g. "annotators" (labeler.aggregate.report)."""
    from labeler.evaluate.gather import gather
    from labeler.evaluate.measure import build_metrics
    from labeler.evaluate.report import write_report

    inputs = gather(run_dir, human_file=human_file)
    metrics = build_metrics(inputs, n_boot=n_boot, seed=seed)
    metrics.update({k: v for k, v in (extra or {}).items() if v is not None})
    out = out_dir or run_dir / "report"
    write_report(metrics, out)
    return out, metrics
