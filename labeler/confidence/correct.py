"""The run-level bias correction: fit it (labeler.confidence.bias), store it in the run, and apply it to
every combined row, so it can change the label. combine_run applies it after every combine, so a resume
keeps it; the raw label stays in the row (`raw_label`) and in the export.

Kinds (CORRECTIONS), all of them offsets b added to the log-probabilities, p'(y|x) ∝ p(y|x)·exp(b_y):

    none                   b = 0
    contextual             b = −log p(y | content-free input), averaged over a few such inputs
    offsets_f1 / _ll       b fitted on human labels for macro-F1 (grid search) or likelihood, held to
                           predicting each label about as often as the humans did (no flipped bias)
    contextual+offsets_*   contextual first, then offsets fitted on the contextually corrected distributions

Which correction a run applies: the one stored in the run (`labeler tune`), else the task's [correction]
(a tuned task TOML carries it, so a new run from it is corrected from its first combine).
Applying is plain Python (a handful of labels per item): labeling does not load numpy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from labeler.config import TaskConfig
from labeler.quality_config import CORRECTIONS
from labeler.store import RunStore
from labeler.store.rows import CombinedRow
from labeler.store.tune_tables import StoredCorrection

if TYPE_CHECKING:
    import numpy as np

FLOOR = 1e-9  # as labeler.confidence.bias


def fit_offsets_for(
    kind: str, probs: np.ndarray, y: np.ndarray | None, *, content_free: np.ndarray | None = None
) -> np.ndarray:
    """Offsets (k,) of correction `kind` fitted on `probs` (n, k) and human labels `y` (n,) (label indices);
    `content_free` (m, k): the model's distributions on content-free inputs (for the contextual kinds)."""
    import numpy as np

    from labeler.confidence.bias import apply_offsets, contextual_offsets, fit_offsets

    if kind not in CORRECTIONS:
        raise ValueError(f"correction kind must be one of {CORRECTIONS}, got {kind!r}")
    k = np.shape(probs)[1]
    base = np.zeros(k)
    if kind.startswith("contextual"):
        if content_free is None or not len(content_free):
            raise ValueError(f"{kind} needs the model's distributions on content-free inputs")
        base = contextual_offsets(content_free)
    if kind in ("none", "contextual"):
        return base
    if y is None:
        raise ValueError(f"{kind} needs human labels")
    objective = "macro_f1" if kind.endswith("_f1") else "log_loss"
    fitted = fit_offsets(apply_offsets(probs, base), y, objective=objective, l2=0.01 if objective == "log_loss" else 0)
    total: np.ndarray = base + fitted
    return total - total.mean()


def objective_of(kind: str) -> str:
    return "macro_f1" if kind.endswith("_f1") else "log_loss" if kind.endswith("_ll") else ""


def correct_dist(dist: Mapping[str, float], offsets: Mapping[str, float], labels: Sequence[str]) -> dict[str, float]:
    """softmax(log p + b) over `labels` (probabilities floored at FLOOR, as in labeler.confidence.bias)."""
    z = [math.log(max(float(dist.get(lab, 0.0)), FLOOR)) + float(offsets.get(lab, 0.0)) for lab in labels]
    top = max(z)
    e = [math.exp(v - top) for v in z]
    total = sum(e)
    return {lab: v / total for lab, v in zip(labels, e, strict=True)}


def correct_row(row: CombinedRow, c: StoredCorrection, labels: Sequence[str]) -> CombinedRow:
    """The row with its distribution, label and confidence corrected; its label before, in `raw_label`.
    Rows without a label or a distribution over the labels keep their label."""
    if row.label is None or not row.distribution or not any(lab in row.distribution for lab in labels):
        return replace(row, raw_label=row.label)
    dist = correct_dist(row.distribution, c.offsets, labels)
    label = max(labels, key=lambda lab: (dist[lab], -labels.index(lab)))  # ties: label order
    return replace(row, label=label, confidence=dist[label], distribution=dist, raw_label=row.label)


def correct_rows(
    rows: Iterable[CombinedRow], c: StoredCorrection | None, labels: Sequence[str]
) -> Iterator[CombinedRow]:
    if c is None:
        yield from rows
        return
    for row in rows:
        yield correct_row(row, c, labels)


def from_task(task: TaskConfig) -> StoredCorrection | None:
    """The task's [correction], if it names one."""
    cfg = task.quality.correction
    if cfg.kind == "none" and not any(v for _, v in cfg.offsets):
        return None
    return StoredCorrection(
        kind=cfg.kind,
        offsets=dict(cfg.offsets),
        content_free=dict(cfg.content_free),
        objective=cfg.objective,
        source=cfg.source or f"the task config {task.path.name}",
    )


def active_correction(store: RunStore, task: TaskConfig) -> StoredCorrection | None:
    """The correction the run applies: the stored one, else the task's [correction] (then stored, so the
    run names it in its tables and manifest too)."""
    stored = store.correction()
    if stored is not None:
        return stored
    from_config = from_task(task)
    if from_config is not None:
        store.put_correction(replace(from_config, fitted_at=time.time()))
    return from_config


def describe(c: StoredCorrection, labels: Sequence[str]) -> str:
    offsets = ", ".join(f"{lab} {c.offsets.get(lab, 0.0):+.2f}" for lab in labels)
    return f"{c.kind} (offsets on log p: {offsets}; fitted on {c.source or 'unknown items'})"
