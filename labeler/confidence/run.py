"""The run-level confidence steps: combine every item's member answers, fit calibrators on the items that
have human labels, store them, and re-apply the stored calibrator after every combine.

    combine_run(store, task)     one CombinedRow per item (labeler.confidence.ensemble), then re-applies the
                                 stored "ensemble" calibrator: a resume after `labeler calibrate` keeps it
                                 (multi_label, spans: labeler.confidence.elements, through the stored
                                 per-label / per-type calibrators of labeler.confidence.per_label)
    calibrate_run(store, task)   per method: fit temperature/Platt/isotonic, choose by cross-validated
                                 log-loss (labeler.confidence.calibrators), store it with its out-of-fold
                                 values; for "ensemble", write the calibrated confidence of every item.
                                 Multi-label and span runs: one calibrator per label / entity type instead
    calibrate_path(run_dir)      `labeler calibrate`

A labelled item keeps its out-of-fold value, made by a calibrator that never saw it, so "after" numbers
on labelled items are honest. Human labels follow labeler.humans (one rule for every stage).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labeler.confidence.correct import active_correction, correct_rows
from labeler.confidence.elements import combine_elements
from labeler.confidence.ensemble import MemberView, combine_item
from labeler.confidence.per_label import ELEMENT, element_data, element_names, fit_elements, put_element_rows
from labeler.config import CONFIDENCE_METHODS, TaskConfig
from labeler.errors import CalibrationError
from labeler.humans import read_humans
from labeler.store import RunStore
from labeler.store.rows import CombinedRow, StoredCalibrator
from labeler.tasktypes import TaskType
from labeler.tasktypes.gold import read_annotation
from labeler.tasktypes.registry import for_task

if TYPE_CHECKING:  # numpy, scipy and scikit-learn load only when a calibrator is fitted or applied
    from labeler.confidence.calibrators import CalData, Selection

ENSEMBLE = "ensemble"
METHODS = (*CONFIDENCE_METHODS, ENSEMBLE)


# --- combine -----------------------------------------------------------------------------------
def _combined_rows(store: RunStore, task: TaskConfig) -> Iterator[CombinedRow]:
    for rows in store.item_rows():
        views = {name: MemberView.from_result(r) for name, r in rows.results.items()}
        yield combine_item(
            views,
            labels=task.label_names,
            method_order=task.confidence.methods,
            combine=task.confidence.combine,
            min_vote_share=task.routing.min_vote_share,
            max_divergence=task.routing.max_divergence,
            item_id=rows.id,
        )


def _element_rows(store: RunStore, task: TaskConfig) -> Iterator[CombinedRow]:
    """Combined rows of a task type scored element by element (labeler.confidence.elements), with the element
    thresholds `labeler tune` stored in the run applied (labeler.confidence.thresholds), if any."""
    from labeler.confidence.thresholds import THRESHOLDS, threshold_rows

    kind = for_task(task)
    stored = store.correction()
    th = stored.offsets if stored is not None and stored.kind == THRESHOLDS else None
    return threshold_rows(_member_rows(store, task, kind), th, kind, min_keep=task.kind.min_labels)


def _member_rows(store: RunStore, task: TaskConfig, kind: TaskType) -> Iterator[CombinedRow]:
    for rows in store.item_rows():
        members: dict[str, tuple[Any, Mapping[str, float] | None] | None] = {}
        for name, r in rows.results.items():
            conf = next((r.distributions[m] for m in task.confidence.methods if r.distributions.get(m)), None)
            members[name] = (kind.decode(r.label), conf) if r.status == "labeled" and r.label is not None else None
        yield combine_elements(members, kind, min_vote_share=task.routing.min_vote_share,
                               max_divergence=task.routing.max_divergence, item_id=rows.id)


def needs_combine(store: RunStore) -> bool:
    """True when the combined rows are missing or older than the results."""
    return store.get_meta("combined_signature") != store.results_signature()


def combine_run(store: RunStore, task: TaskConfig) -> int:
    """Rewrite the combined rows from the results (one per item that has results), apply the run's bias
    correction (labeler.confidence.correct: distribution and label corrected, the raw label kept), then
    re-apply the stored ensemble calibrator, if any. Returns the row count."""
    signature = store.results_signature()
    if task.kind.elementwise:  # no bias correction; the stored element calibrators (per label, per type) re-applied
        return put_element_rows(store, for_task(task), _element_rows(store, task), signature=signature)
    correction = active_correction(store, task)
    rows = correct_rows(_combined_rows(store, task), correction, task.label_names)
    n = store.put_combined(rows, signature=signature)
    stored = store.calibrator(ENSEMBLE)
    if stored is not None:
        apply_calibrator(store, task, stored)
    return n


# --- calibrate ---------------------------------------------------------------------------------
def _vector(dist: Mapping[str, float], labels: Sequence[str]) -> list[float]:
    return [float(dist.get(lab, 0.0)) for lab in labels]


def _method_items(store: RunStore, task: TaskConfig, method: str) -> Iterator[tuple[str, str, list[float]]]:
    """(item id, chosen label, distribution over labels) per item for `method`: the ensemble's answer from
    the combined rows, or the members' answers under that one method alone."""
    labels = task.label_names
    if method == ENSEMBLE:
        for c in store.combined_rows(labeled_only=True):
            assert c.label is not None
            yield c.item_id, c.label, _vector(c.distribution, labels)
        return
    for rows in store.item_rows():
        having = {n: MemberView.from_result(r) for n, r in rows.results.items() if method in r.distributions}
        if not having:
            continue
        one = combine_item(having, labels=labels, method_order=(method,), combine=task.confidence.combine)
        if one.label is not None:
            yield rows.id, one.label, _vector(one.distribution, labels)


def method_data(store: RunStore, task: TaskConfig, method: str, human: Mapping[str, str]) -> tuple[list[str], CalData]:
    """The human-labelled items' ids and their CalData for `method`."""
    import numpy as np

    from labeler.confidence.calibrators import CalData

    index = {lab: i for i, lab in enumerate(task.label_names)}
    ids, probs, pred, truth = [], [], [], []
    for item_id, label, vec in _method_items(store, task, method):
        if item_id in human:
            ids.append(item_id)
            probs.append(vec)
            pred.append(index[label])
            truth.append(index[human[item_id]])
    k = len(index)
    data = CalData(
        np.asarray(probs, dtype=float).reshape(-1, k), np.asarray(pred, dtype=int), np.asarray(truth, dtype=int)
    )
    return ids, data


def human_labels(store: RunStore, labels: Sequence[str]) -> dict[str, str]:
    """item id -> its human label (labeler.humans' rule), for the items that have one."""
    verdicts = read_humans(store, labels).verdicts
    return {i: v.label for i, v in verdicts.items() if v.label is not None}


@dataclass(frozen=True)
class MethodReport:
    """One method's calibration: before = raw confidence; after = out-of-fold calibrated, on the n items."""

    method: str
    n: int
    kind: str | None = None
    ece_before: float | None = None
    ece_after: float | None = None
    log_loss_before: float | None = None
    log_loss_after: float | None = None
    cv_log_loss: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    skipped: str | None = None  # why it was not calibrated


def _persist(store: RunStore, method: str, sel: Selection, ids: Sequence[str]) -> StoredCalibrator:
    stored = StoredCalibrator(
        method=method,
        kind=sel.kind,
        params=sel.calibrator.params(),
        cv_log_loss=float(sel.cv_log_loss[sel.kind]),
        n_fit=len(ids),
        fitted_at=time.time(),
        out_of_fold=dict(zip(ids, (float(v) for v in sel.oof), strict=True)),
    )
    store.put_calibrator(stored)
    # calibrator.json beside the run: for people and other tools (the store holds the run's own copy)
    path = store.run_dir / "calibrator.json"
    saved = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    saved[method] = {
        "kind": stored.kind,
        "params": dict(stored.params),
        "cv_log_loss": stored.cv_log_loss,
        "cv_log_loss_by_kind": dict(sel.cv_log_loss),
        "n_fit": stored.n_fit,
        "fitted_at": stored.fitted_at,
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(saved, indent=2), encoding="utf-8")
    tmp.replace(path)
    return stored


def apply_calibrator(store: RunStore, task: TaskConfig, stored: StoredCalibrator) -> int:
    """Write the calibrated confidence of every combined item with a label: its out-of-fold value if it has
    one, else the stored calibrator's prediction. Returns the number of items written."""
    import numpy as np

    from labeler.confidence.calibrators import CalData, from_params

    calibrator = from_params(stored.kind, stored.params)
    index = {lab: i for i, lab in enumerate(task.label_names)}
    k = len(index)
    batch: list[CombinedRow] = []
    updates: list[tuple[str, float | None]] = []

    def flush() -> None:
        if not batch:
            return
        probs = np.asarray([_vector(c.distribution, task.label_names) for c in batch]).reshape(-1, k)
        pred = np.asarray([index[str(c.label)] for c in batch], dtype=int)
        p = calibrator.predict(CalData(probs, pred, pred))
        updates.extend((c.item_id, stored.out_of_fold.get(c.item_id, float(v))) for c, v in zip(batch, p, strict=True))
        batch.clear()

    for c in store.combined_rows(labeled_only=True):
        if c.label in index:
            batch.append(c)
            if len(batch) >= 2000:
                flush()
    flush()
    store.set_calibrated(updates)
    return len(updates)


def calibrate_run(
    store: RunStore,
    task: TaskConfig,
    *,
    methods: Sequence[str] | None = None,
    n_splits: int = 5,
    seed: int = 0,
    min_items: int | None = None,
) -> list[MethodReport]:
    """Combine (if the results changed), then fit, choose, store and (for "ensemble") apply a calibrator
    per method. Default methods: the task's confidence methods and "ensemble"."""
    from labeler.confidence.calibrators import MIN_ITEMS, correctness_log_loss, ece, select_calibrator

    min_items = MIN_ITEMS if min_items is None else min_items
    if needs_combine(store):
        combine_run(store, task)
    methods = list(methods or (*task.confidence.methods, ENSEMBLE))
    if task.kind.elementwise:
        return _calibrate_elements(store, task, n_splits=n_splits, seed=seed, min_items=min_items)
    human = human_labels(store, task.label_names)
    reports = []
    for method in methods:
        if method not in METHODS:
            raise CalibrationError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
        ids, data = method_data(store, task, method, human)
        try:
            sel = select_calibrator(data, n_splits=n_splits, seed=seed, min_items=min_items)
        except CalibrationError as exc:
            reports.append(MethodReport(method, len(data), skipped=str(exc)))
            continue
        stored = _persist(store, method, sel, ids)
        if method == ENSEMBLE:
            apply_calibrator(store, task, stored)
        conf, correct = data.conf, data.correct
        reports.append(
            MethodReport(
                method=method,
                n=len(data),
                kind=sel.kind,
                ece_before=ece(conf, correct),
                ece_after=ece(sel.oof, correct),
                log_loss_before=correctness_log_loss(conf, correct),
                log_loss_after=correctness_log_loss(sel.oof, correct),
                cv_log_loss=sel.cv_log_loss,
                params=dict(stored.params),
            )
        )
    return reports


def _calibrate_elements(
    store: RunStore, task: TaskConfig, *, n_splits: int, seed: int, min_items: int
) -> list[MethodReport]:
    """Per label of a multi-label run, per entity type of a span run (labeler.confidence.per_label): fit on the
    raw element confidences (recombined from the results: the stored rows hold calibrated ones), store,
    report, then re-combine so every row goes through the new calibrators."""
    from labeler.confidence.calibrators import CalData, correctness_log_loss, ece

    kind = for_task(task)
    read = {i: read_annotation(kind, v) for i, v in human_labels(store, task.label_names).items()}
    human = {i: v for i, v in read.items() if v is not None}
    raw = ((c.item_id, c.distribution) for c in _element_rows(store, task) if c.label is not None and c.distribution)
    llm = dict(sorted(raw, key=lambda kv: kv[0]))  # item-id order: the folds do not depend on the input order
    data = element_data(llm, human, kind)
    reports = []
    fits = fit_elements(data, element_names(kind), n_splits=n_splits, seed=seed, min_items=min_items)
    for name, sel in fits.items():
        if isinstance(sel, str):
            reports.append(MethodReport(name, len(data.get(name, ((),))[0]), skipped=sel))
            continue
        ids, conf, ok = data[name]
        cal = CalData.from_confidence(conf, ok)
        stored = _persist(store, ELEMENT + name, sel, ids)
        reports.append(
            MethodReport(
                method=name,
                n=len(ids),
                kind=sel.kind,
                ece_before=ece(cal.conf, cal.correct),
                ece_after=ece(sel.oof, cal.correct),
                log_loss_before=correctness_log_loss(cal.conf, cal.correct),
                log_loss_after=correctness_log_loss(sel.oof, cal.correct),
                cv_log_loss=sel.cv_log_loss,
                params=dict(stored.params),
            )
        )
    combine_run(store, task)
    return reports


def format_reports(reports: Sequence[MethodReport]) -> str:
    width = max([12, *(len(r.method) for r in reports)])
    lines = [f"{'method':{width}s} {'n':>6s}  {'kind':11s}  {'ECE before → after':20s}  log-loss before → after"]
    for r in reports:
        if r.skipped:
            lines.append(f"{r.method:{width}s} {r.n:6d}  skipped: {r.skipped}")
            continue
        lines.append(
            f"{r.method:{width}s} {r.n:6d}  {r.kind or '':11s}  {r.ece_before:.3f} → {r.ece_after:.3f}{'':7s}"
            f"  {r.log_loss_before:.3f} → {r.log_loss_after:.3f}"
        )
    lines.append("after = out-of-fold: each labelled item scored by a calibrator fitted without it")
    return "\n".join(lines)


def calibrate_path(
    run_dir: Path, *, methods: Sequence[str] | None = None, n_splits: int = 5, seed: int = 0
) -> list[MethodReport]:
    """`labeler calibrate`: fit, store and apply the calibrators of one run; an error when nothing could be."""
    store = RunStore.open(run_dir)
    try:
        reports = calibrate_run(store, store.task(), methods=methods, n_splits=n_splits, seed=seed)
    finally:
        store.close()
    if all(r.skipped for r in reports):
        from labeler.confidence.calibrators import MIN_ITEMS

        raise CalibrationError(
            "nothing was calibrated: add a gold column (input.gold_column) or human reviews for at least "
            f"{MIN_ITEMS} items, with right and wrong model answers among them"
        )
    return reports
