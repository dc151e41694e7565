"""labeler: label text corpora with LLMs first and send the doubtful part to humans.

The public API (imported lazily, so `import labeler` stays as light as the command line):

    load_config, TaskConfig              a task TOML file, validated
    start_run, resume_run                label a corpus (async); finish an interrupted run
    RunStore                             a run's durable state: every table, typed rows
    records, ItemRecord                  one record per labeled item: the LLM's label and routing confidence
    decide, read_humans, HumanLabel      the one rule for "the human label" of an item
    route_run, calibrate_path            the review queue; confidence calibration
    export_run, evaluate_run             the labels (or final dataset) as a file; the evaluation report
    LabelerError                         the root of every error a user can act on
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("labeler")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+src"

_WHERE = {
    "LabelerError": "labeler.errors",
    "TaskConfig": "labeler.config",
    "load_config": "labeler.config",
    "RunStore": "labeler.store",
    "ItemRecord": "labeler.record",
    "records": "labeler.record",
    "HumanLabel": "labeler.humans",
    "decide": "labeler.humans",
    "read_humans": "labeler.humans",
    "start_run": "labeler.label.pipeline",
    "resume_run": "labeler.label.pipeline",
    "route_run": "labeler.review.router",
    "calibrate_path": "labeler.confidence.run",
    "export_run": "labeler.export",
    "evaluate_run": "labeler.evaluate.run",
}

__all__ = ["__version__", *_WHERE]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'labeler' has no attribute {name!r}")
    return getattr(import_module(_WHERE[name]), name)
