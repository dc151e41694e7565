"""`labeler tune RUN_DIR`: choose a prompt variant, a few-shot strategy and a bias correction on human labels.

    1. the human labels: the run's reviews and gold column (labeler.humans' rule), or a --dev file; the
       random audit's items are always left out, also from the few-shot pool; at most tune.max_labels
       (a seeded random subset)
    2. label those items and a few content-free inputs under every candidate (variants × strategies)
       through the normal backend and cache path: what was asked before is not paid again
    3. labeler.tune.protocol: each correction fitted inside stratified folds, macro-F1 with a bootstrap
       interval on the held-out folds, the best candidate and correction chosen
    4. the correction refitted on every tuning item; a calibrator fitted on the corrected held-out
       predictions (labeler.tune.calibration: installed with the correction, in place or by the relabel);
       all of it stored in the run (table tunings), and the tuned task written to RUN_DIR/tuned.toml
       (with its examples in RUN_DIR/tuned_examples.jsonl)

A multi-label or span run is tuned by labeler.tune.tasktype_run: its task type's micro-F1 scores the
candidates, and its "correction" is a per-class minimum element confidence.

When the chosen candidate sends exactly the prompts the run was labeled with, the correction is applied
to the run in place (stored, named in the manifest, applied by every combine). Otherwise
`labeler relabel RUN_DIR` (labeler.tune.relabel) labels the corpus under it, paying only for prompts
that changed.

The candidates are asked as the run asks: K items a prompt when the model asks K (`items_per_request`;
an item's answer is cached by its text and prompt, whatever its neighbours, so the relabel reuses it).
A task with several ensemble members is refused: tuning labels with one model and fits the correction
and calibrator on its answers, while the tuned TOML changes every member's prompt (task-wide answer
words, instructions, examples) and the run applies both to the members' combined distribution — nothing
tuning measured. Tune a run of one member.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from labeler.confidence.correct import fit_offsets_for, objective_of
from labeler.confidence.run import combine_run, human_labels
from labeler.config import TaskConfig
from labeler.errors import TuneError
from labeler.label import pipeline
from labeler.label.examples import task_pool
from labeler.label.progress import Progress
from labeler.runlock import RunLock
from labeler.safe_text import visible_line
from labeler.store import Cache, RunStore
from labeler.store.tune_tables import StoredCorrection
from labeler.tune.calibration import fit_after_correction
from labeler.tune.calibration import stored as stored_calibrator
from labeler.tune.candidates import Candidate, candidate_task, candidates, dumps_toml, tuned_config
from labeler.tune.labeling import MIN_ITEMS, Spend, answer_key, label_texts
from labeler.tune.nested import nested_score
from labeler.tune.protocol import Score, bootstrap_indices, choose, score_candidate, stratified_folds
from labeler.tune.report import build_report, format_report, shown
from labeler.types import Example, ItemResult

__all__ = ["format_report", "label_texts", "shown", "tune_run"]

CONTENT_FREE = ("N/A", "[MASK]", "")  # Zhao et al. 2021: inputs that say nothing about any label


@dataclass(frozen=True)
class TuningSet:
    ids: tuple[str, ...]
    labels: tuple[str, ...]
    texts: tuple[str, ...]
    source: str
    audit_left_out: int


def tuning_set(
    store: RunStore, task: TaskConfig, *, dev: Sequence[tuple[str, str]] | None, max_labels: int, seed: int
) -> TuningSet:
    """The human-labelled items tuning may use: never an item of the random audit."""
    audit = {e.item_id for e in store.queue() if e.audit}
    canon = {lab.lower(): lab for lab in task.label_names}
    if dev is not None:
        human = {i: canon[lab.lower()] for i, lab in dev if lab.lower() in canon}
        source = "the --dev file"
    else:
        human = human_labels(store, task.label_names)
        source = "the run's reviews and gold column"
    texts = {r.id: r.text for r in store.item_rows() if r.id in human and r.id not in audit}
    ids = [i for i in human if i in texts]
    if len(ids) > max_labels:
        ids = sorted(random.Random(seed).sample(sorted(ids), max_labels))
    if len(ids) < MIN_ITEMS and dev is not None:
        file_ids = {i for i, _ in dev}
        in_run = len(file_ids & {r.id for r in store.item_rows()})
        raise TuneError(
            f"the --dev file has {len(file_ids)} ids, {in_run} of them items of this run "
            f"({len(ids)} usable: a known label, outside the random audit); tuning needs at least {MIN_ITEMS}: "
            "the dev items must be part of the run's corpus (its input file, same ids)"
        )
    if len(ids) < MIN_ITEMS:
        raise TuneError(
            f"need at least {MIN_ITEMS} human-labelled items outside the random audit to tune (have {len(ids)}); "
            "review more items, or pass --dev FILE (columns id, label)"
        )
    return TuningSet(
        tuple(ids), tuple(human[i] for i in ids), tuple(texts[i] for i in ids), source, len(audit & set(human))
    )


def as_probs(r: ItemResult | None, labels: Sequence[str], methods: Sequence[str]) -> list[float]:
    """A result's distribution over the labels: its first confidence method's, else its label one-hot;
    uniform for a failed item."""
    k = len(labels)
    if r is None or r.status != "labeled" or r.label is None:
        return [1.0 / k] * k
    for m in methods:
        d = r.distributions.get(m)
        if d:
            v = [max(float(d.get(lab, 0.0)), 0.0) for lab in labels]
            total = sum(v)
            if total > 0:
                return [x / total for x in v]
    return [1.0 if lab == r.label else 0.0 for lab in labels]


@dataclass
class CandidateRun:
    candidate: Candidate
    probs: np.ndarray
    content_free: np.ndarray
    spend: Spend
    same_prompts_as_run: bool = False
    scores: list[Score] = field(default_factory=list)


async def _label_candidates(
    task: TaskConfig,
    store: RunStore,
    cands: Sequence[Candidate],
    ts: TuningSet,
    pool: tuple[Example, ...],
    show_progress: bool = False,
) -> list[CandidateRun]:
    labels, methods = task.label_names, task.confidence.methods
    run_key = answer_key(task)
    probe = ts.texts[: min(5, len(ts.texts))]
    cache = Cache(pipeline.cache_path(store.run_dir))
    out = []
    try:
        async with pipeline.open_backends(replace(task, members=(task.primary,))) as backends:
            for n, c in enumerate(cands, 1):
                ctask = candidate_task(task, c, pool=pool)
                cf_items = [(f"content-free:{i}", t) for i, t in enumerate(CONTENT_FREE)]
                texts = [*zip(ts.ids, ts.texts, strict=True), *cf_items]
                progress = Progress(len(texts)) if show_progress else None
                if progress is not None:
                    progress.gauge = lambda c=c, n=n: f"candidate {visible_line(c.name)} ({n} of {len(cands)})"
                try:
                    results, spend = await label_texts(
                        ctask, backends[task.primary.name], cache, texts, progress=progress
                    )
                finally:
                    if progress is not None:
                        progress.finish()
                key = answer_key(ctask)
                same = all(key(t) == run_key(t) for t in probe)
                probs = np.asarray([as_probs(results.get(i), labels, methods) for i in ts.ids])
                cf = [results.get(i) for i, _ in cf_items]
                cf_probs = np.asarray([as_probs(r, labels, methods) for r in cf if r is not None and r.distributions])
                out.append(CandidateRun(c, probs, cf_probs.reshape(-1, len(labels)), spend, same))
    finally:
        cache.close()
    return out


def tune_run(
    run_dir: Path,
    *,
    dev: Sequence[tuple[str, str]] | None = None,
    max_labels: int | None = None,
    strategies: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
    corrections: Sequence[str] | None = None,
    folds: int | None = None,
    seed: int | None = None,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Tune one run (see the module docstring). Returns the report that is stored in the run.
    `show_progress`: the run's progress line on stderr while the candidates are labeled."""
    with RunLock(run_dir):
        store = RunStore.open(run_dir)
        try:
            task = store.task()
            if len(task.members) > 1:
                raise TuneError(
                    f"labeler tune tunes one model, and {run_dir.name} has {len(task.members)} ensemble members "
                    f"({', '.join(m.name for m in task.members)}): their combined labels would get a prompt and "
                    "correction fitted on the first alone; tune a run of one member (a task without [[members]])"
                )
            try:
                cands = candidates(task, strategies=strategies, variants=variants)
            except ValueError as exc:
                raise TuneError(str(exc)) from None
            if task.kind.elementwise:  # multi_label, spans: scored by the task type (labeler.tune.tasktype_run)
                from labeler.tune.tasktype_run import tune_elements

                return tune_elements(store, task, cands, dev=dev, max_labels=max_labels, corrections=corrections,
                                     folds=folds, seed=seed, show_progress=show_progress)
            if corrections and "thresholds" in corrections:
                raise TuneError("--correction thresholds is for multi-label and span tasks; single labels take "
                                "the bias corrections (none, contextual, offsets_*)")
            return _tune(store, task, cands, dev, max_labels, corrections, folds, seed, show_progress)
        finally:
            store.close()


def _tune(
    store: RunStore,
    task: TaskConfig,
    cands: Sequence[Candidate],
    dev: Sequence[tuple[str, str]] | None,
    max_labels: int | None,
    corrections: Sequence[str] | None,
    folds: int | None,
    seed: int | None,
    show_progress: bool = False,
) -> dict[str, Any]:
    cfg = task.quality.tune
    seed = cfg.seed if seed is None else seed
    ts = tuning_set(store, task, dev=dev, max_labels=max_labels or cfg.max_labels, seed=seed)
    audit_texts = {e.text.strip() for e in store.queue() if e.audit}
    pool = tuple(e for e in task_pool(task) if e.text.strip() not in audit_texts)
    started = time.monotonic()
    runs = asyncio.run(_label_candidates(task, store, cands, ts, pool, show_progress))
    labels = task.label_names
    index = {lab: i for i, lab in enumerate(labels)}
    y = np.asarray([index[lab] for lab in ts.labels], dtype=int)
    n_splits = max(2, min(folds or cfg.folds, int(np.bincount(y, minlength=len(labels)).max())))
    fold_of = stratified_folds(y, len(labels), n_splits=n_splits, seed=seed)
    boot = bootstrap_indices(len(y), n_boot=cfg.n_boot, seed=seed)
    kinds = tuple(corrections or cfg.corrections)
    for r in runs:
        r.scores = score_candidate(
            r.candidate.name, r.probs, y, kinds=kinds, fold_of=fold_of, boot=boot, content_free=r.content_free
        )
    best = choose([s for r in runs for s in r.scores])
    nested = nested_score(
        {r.candidate.name: (r.probs, r.content_free) for r in runs},
        y,
        kinds=kinds,
        outer=n_splits,
        inner=n_splits,
        n_boot=cfg.n_boot,
        seed=seed,
    )
    chosen = next(r for r in runs if r.candidate.name == best.candidate)
    offsets = fit_offsets_for(best.correction, chosen.probs, y, content_free=chosen.content_free)
    cf_mean = chosen.content_free.mean(axis=0) if len(chosen.content_free) else np.zeros(0)
    correction = StoredCorrection(
        kind=best.correction,
        offsets={lab: round(float(b), 6) for lab, b in zip(labels, offsets, strict=True)},
        content_free={lab: round(float(p), 6) for lab, p in zip(labels, cf_mean, strict=True)},
        objective=objective_of(best.correction),
        source=f"{len(ts.ids)} human labels from {ts.source} (random audit left out), run {store.run_dir.name}",
        fitted_at=time.time(),
    )
    toml_path = store.run_dir / "tuned.toml"
    examples_path = store.run_dir / "tuned_examples.jsonl"
    examples_path.write_text(
        "".join(json.dumps({"text": e.text, "label": e.label}, ensure_ascii=False) + "\n" for e in pool),
        encoding="utf-8",
    )
    note = (
        f"Written by `labeler tune {shown(store.run_dir)}`: candidate {best.candidate}, correction {best.correction};\n"
        f"held-out macro-F1 {best.macro_f1:.3f} ({best.low:.3f}–{best.high:.3f}) on {len(ts.ids)} human labels "
        f"from {ts.source}\n(random audit left out). These inner scores chose it and flatter it; nested "
        f"cross-validation (the selection repeated\nin each outer fold) estimates {nested.macro_f1:.3f} "
        f"({nested.low:.3f}–{nested.high:.3f}) on new items. Keep it, edit it, start runs from it: "
        f"labeler run {shown(toml_path)}"
    )
    corr_toml = {k: v for k, v in correction.to_dict().items() if k != "fitted_at"}
    doc = tuned_config(
        store.manifest["config"],
        src_dir=Path(store.manifest["config_path"]).parent,
        dst_dir=store.run_dir,
        candidate=chosen.candidate,
        examples_file=examples_path,
        correction=corr_toml,
        note=note,
    )
    toml_path.write_text(dumps_toml(doc), encoding="utf-8")
    applied = chosen.same_prompts_as_run and all(len(r.results) == 1 for r in store.item_rows())
    calibrator = fit_after_correction(best.oof_probs, y, ts.ids)
    if applied:  # the run already holds the chosen candidate's answers: correct it in place
        store.put_correction(correction)
        if calibrator is not None:  # replaces one fitted before the correction (labeler.tune.calibration)
            store.put_calibrator(stored_calibrator(calibrator, len(ts.ids)))
        combine_run(store, task)
    report = build_report(store, ts, runs, best, correction, toml_path, applied, time.monotonic() - started)
    report["nested"] = {
        "macro_f1": nested.macro_f1,
        "low": nested.low,
        "high": nested.high,
        "picks": [f"{c} + {k}" for c, k in nested.picks],
    }
    report["calibrator"] = calibrator
    report["oof"] = {"ids": list(ts.ids), "pred": [labels[i] for i in best.oof_pred]}
    store.put_tuning(report)
    return report
