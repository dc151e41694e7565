"""`labeler tune RUN_DIR` for multi-label and span runs: the task type's own score decides.

    1. the human annotations (reviews and gold column, labeler.humans' rule, or --dev), never the random
       audit's items, at most tune.max_labels (a seeded subset) — as for single labels (labeler.tune.run)
    2. every candidate (prompt variant × few-shot strategy) labels them through the backend and the cache
    3. labeler.tune.elements: micro-F1 (multi-label: over item-label pairs; spans: exact matches) with a
       bootstrap interval, as they are ("none") and with per-class minimum element confidences fitted on the
       other folds ("thresholds"; skipped, saying why, when the confidences do not vary); the one-SE choice;
       nested cross-validation of that whole choice for an estimate on unseen items
    4. the chosen thresholds refitted on every tuning item; stored in the run as a correction of kind
       element_thresholds (applied by every combine) when the chosen prompts are the run's own, else by
       `labeler relabel`; the tuned TOML written (its opening comment names the thresholds, which the relabel
       takes from the run's tuning)

The report also gives the task type's own evaluation (labeler.tasktypes: micro- and macro-F1 and subset
accuracy; exact and partial span F1) of the held-out predictions, with and without the thresholds.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from labeler.confidence.run import combine_run, needs_combine
from labeler.confidence.thresholds import THRESHOLDS as STORED_KIND
from labeler.config import TaskConfig
from labeler.errors import CalibrationError, TuneError
from labeler.humans import read_humans
from labeler.label import pipeline
from labeler.label.examples import task_pool
from labeler.label.progress import Progress
from labeler.safe_text import visible_line
from labeler.store import Cache, RunStore
from labeler.store.tune_tables import StoredCorrection
from labeler.tasktypes import TaskType
from labeler.tasktypes.gold import read_annotation
from labeler.tasktypes.registry import for_task
from labeler.tune import elements as el
from labeler.tune.candidates import Candidate, candidate_task, dumps_toml, tuned_config
from labeler.tune.labeling import MIN_ITEMS, Spend, answer_key, label_texts
from labeler.tune.protocol import bootstrap_indices
from labeler.tune.report import candidate_rows, cost_of, shown
from labeler.types import Example

KINDS = el.KINDS_ALL


@dataclass(frozen=True)
class ElementTuningSet:
    ids: tuple[str, ...]
    truth: tuple[object, ...]
    texts: tuple[str, ...]
    source: str
    audit_left_out: int


def tuning_set(
    store: RunStore, task: TaskConfig, kind: TaskType, *, dev: Sequence[tuple[str, str]] | None, max_labels: int,
    seed: int,
) -> ElementTuningSet:
    """The human-annotated items tuning may use (never one of the random audit), decoded."""
    audit = {e.item_id for e in store.queue() if e.audit}
    all_texts = {r.id: r.text for r in store.item_rows()}
    if dev is not None:
        raw, source = dict(dev), "the --dev file"
    else:
        verdicts = read_humans(store, task.label_names).verdicts
        raw = {i: v.label for i, v in verdicts.items() if v.label is not None}
        source = "the run's reviews and gold column"
    human = {i: read_annotation(kind, lab, text=all_texts[i]) for i, lab in raw.items() if i in all_texts}
    ids = [i for i, v in human.items() if v is not None and i not in audit]
    if len(ids) > max_labels:
        ids = sorted(random.Random(seed).sample(sorted(ids), max_labels))
    if len(ids) < MIN_ITEMS:
        unread = sum(v is None for v in human.values())
        fix = ("the dev items must be part of the run's corpus (its input file, same ids)" if dev is not None
               else "review more items, or pass --dev FILE (columns id, label)")
        if unread:
            first = next(raw[i] for i, v in human.items() if v is None)
            form = ("label names separated by ';' or a JSON list" if kind.name == "multi_label"
                    else "a JSON list of start/end/type objects")
            fix = f"{unread} labels are no annotation of this task (e.g. {first[:40]!r}): write them as {form}"
        raise TuneError(f"need at least {MIN_ITEMS} human-annotated items outside the random audit to tune "
                        f"(have {len(ids)}); {fix}")
    return ElementTuningSet(tuple(ids), tuple(human[i] for i in ids), tuple(all_texts[i] for i in ids), source,
                            len(audit & set(human)))


@dataclass
class ElementRun:
    candidate: Candidate
    preds: el.Preds
    spend: Spend
    same_prompts_as_run: bool = False
    scores: list[el.ElementScore] = field(default_factory=list)


async def _label(task: TaskConfig, store: RunStore, kind: TaskType, cands: Sequence[Candidate],
                 ts: ElementTuningSet, pool: tuple[Example, ...], show_progress: bool) -> list[ElementRun]:
    run_key = answer_key(task)
    probe = ts.texts[: min(5, len(ts.texts))]
    cache = Cache(pipeline.cache_path(store.run_dir))
    methods = task.confidence.methods
    out = []
    try:
        async with pipeline.open_backends(replace(task, members=(task.primary,))) as backends:
            for n, c in enumerate(cands, 1):
                ctask = candidate_task(task, c, pool=pool)
                progress = Progress(len(ts.ids)) if show_progress else None
                if progress is not None:
                    progress.gauge = lambda c=c, n=n: f"candidate {visible_line(c.name)} ({n} of {len(cands)})"
                try:
                    results, spend = await label_texts(ctask, backends[task.primary.name], cache,
                                                       list(zip(ts.ids, ts.texts, strict=True)), progress=progress)
                finally:
                    if progress is not None:
                        progress.finish()
                values, dists = [], []
                for i in ts.ids:
                    r = results.get(i)
                    ok = r is not None and r.status == "labeled" and r.label is not None
                    values.append(kind.decode(r.label) if ok and r is not None else None)
                    d = next((r.distributions[m] for m in methods if r.distributions.get(m)), {}) if ok and r else {}
                    dists.append(dict(d))
                key = answer_key(ctask)
                same = all(key(t) == run_key(t) for t in probe)
                out.append(ElementRun(c, el.Preds(tuple(values), tuple(dists)), spend, same))
    finally:
        cache.close()
    return out


def _details(kind: TaskType, truth: Sequence[object], pred: Sequence[object], n_boot: int, seed: int) -> dict[str, Any]:
    """The task type's own evaluation of held-out predictions, its headline figures only."""
    ev = kind.evaluate(list(truth), [p if p is not None else () for p in pred], n_boot=n_boot, seed=seed)
    if "exact" in ev:  # spans
        return {"exact_f1_micro": ev["exact"]["f1_micro"], "partial_f1_micro": ev["partial"]["f1_micro"]}
    return {"f1_micro": ev["f1_micro"], "f1_macro": ev["f1_macro"], "subset_accuracy": ev["subset_accuracy"]}


def tune_elements(
    store: RunStore, task: TaskConfig, cands: Sequence[Candidate], *, dev: Sequence[tuple[str, str]] | None,
    max_labels: int | None, corrections: Sequence[str] | None, folds: int | None, seed: int | None,
    show_progress: bool = False,
) -> dict[str, Any]:
    cfg = task.quality.tune
    kind = for_task(task)
    seed = cfg.seed if seed is None else seed
    kinds = tuple(k for k in (corrections or KINDS) if k in KINDS)
    if not kinds:
        raise TuneError(f"task.type = {task.kind.type!r} is tuned with the corrections {' and '.join(KINDS)}; "
                        "fix --correction")
    ts = tuning_set(store, task, kind, dev=dev, max_labels=max_labels or cfg.max_labels, seed=seed)
    audit_texts = {e.text.strip() for e in store.queue() if e.audit}
    pool = tuple(e for e in task_pool(task) if e.text.strip() not in audit_texts)
    started = time.monotonic()
    runs = asyncio.run(_label(task, store, kind, cands, ts, pool, show_progress))
    n_splits = max(2, min(folds or cfg.folds, len(ts.ids) // 4))
    fold_of = el.folds_for(ts.truth, n_splits=n_splits, seed=seed)
    boot = bootstrap_indices(len(ts.ids), n_boot=cfg.n_boot, seed=seed)
    min_keep = task.kind.min_labels
    for r in runs:
        r.scores = el.score_candidate(r.candidate.name, r.preds, ts.truth, kind, kinds=kinds, fold_of=fold_of,
                                      boot=boot, min_keep=min_keep)
    best = el.choose([s for r in runs for s in r.scores])
    nest = el.nested({r.candidate.name: r.preds for r in runs}, ts.truth, kind, kinds=kinds, outer=n_splits,
                     inner=n_splits, n_boot=cfg.n_boot, seed=seed, min_keep=min_keep)
    chosen = next(r for r in runs if r.candidate.name == best.candidate)
    all_idx = np.arange(len(ts.ids))
    thresholds = el.fit_thresholds(chosen.preds, ts.truth, all_idx, kind) if best.correction == el.THRESHOLDS else {}
    correction = StoredCorrection(
        kind=STORED_KIND if thresholds else "none", offsets=thresholds, objective="micro_f1",
        source=f"{len(ts.ids)} human annotations from {ts.source} (random audit left out), run {store.run_dir.name}",
        fitted_at=time.time(),
    )
    toml_path = _write_toml(store, task, chosen.candidate, pool, best, nest, thresholds, len(ts.ids), ts.source)
    applied = chosen.same_prompts_as_run and all(len(r.results) == 1 for r in store.item_rows())
    calibration = None
    if applied:  # the run holds these prompts' answers: threshold it in place (every combine applies it)
        store.put_correction(correction)
        combine_run(store, task)
        calibration = recalibrate(store, task)
    without = next(s for s in chosen.scores if s.correction == el.NONE) if el.NONE in kinds else None
    report: dict[str, Any] = {
        "task_type": task.kind.type,
        "metric": "micro-F1 over item-label pairs" if task.kind.type == "multi_label" else "exact-match span micro-F1",
        "run": store.run_dir.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "items": {"n": len(ts.ids), "source": ts.source, "audit_left_out": ts.audit_left_out},
        "candidates": candidate_rows(runs),
        "scores": [_score_row(s) for r in runs for s in r.scores],
        "chosen": {**_score_row(best), "thresholds": thresholds},
        "details": {"chosen": _details(kind, ts.truth, best.oof, cfg.n_boot, seed)},
        "nested": {"score": nest.score, "low": nest.low, "high": nest.high,
                   "picks": [f"{c} + {k}" for c, k in nest.picks]},
        "correction": correction.to_dict(),
        "tuned_toml": str(toml_path),
        "applied_in_place": applied,
        "calibration": calibration,
        "calibrator": None,
        "cost": cost_of(len(ts.ids), runs, time.monotonic() - started),
        "oof": {"ids": list(ts.ids), "pred": [kind.encode(v) for v in best.oof]},
    }
    if without is not None and without is not best:
        report["details"]["without_thresholds"] = _details(kind, ts.truth, without.oof, cfg.n_boot, seed)
    store.put_tuning(report)
    return report


def _score_row(s: el.ElementScore) -> dict[str, Any]:
    return {"candidate": s.candidate, "correction": s.correction, "score": s.score, "low": s.low, "high": s.high,
            "skipped": s.skipped}


def recalibrate(store: RunStore, task: TaskConfig) -> str | None:
    """Per-label calibration after the thresholds (multi-label; labeler.confidence.per_label), in one line."""
    if task.kind.type != "multi_label":
        return None
    from labeler.confidence.run import calibrate_run

    try:
        if needs_combine(store):
            combine_run(store, task)
        reports = calibrate_run(store, task)
    except CalibrationError as exc:
        return f"per-label calibration skipped: {exc}; run `labeler calibrate` when it can"
    fitted = [r.method for r in reports if r.skipped is None]
    return f"per-label calibration refitted after the thresholds: {len(fitted)} of {len(reports)} elements"


def _write_toml(store: RunStore, task: TaskConfig, cand: Candidate, pool: tuple[Example, ...], best: el.ElementScore,
                nest: el.NestedScore, thresholds: Mapping[str, float], n: int, source: str) -> Path:
    toml_path = store.run_dir / "tuned.toml"
    examples_path = store.run_dir / "tuned_examples.jsonl"
    examples_path.write_text(
        "".join(json.dumps({"text": e.text, "label": e.label}, ensure_ascii=False) + "\n" for e in pool),
        encoding="utf-8",
    )
    shown_th = ", ".join(f"{c} {t:.3f}" for c, t in thresholds.items()) or "none"
    note = (
        f"Written by `labeler tune {shown(store.run_dir)}`: candidate {best.candidate}, correction {best.correction};\n"
        f"held-out {task.kind.type} micro-F1 {best.score:.3f} ({best.low:.3f}–{best.high:.3f}) on {n} human "
        f"annotations from {source}\n(random audit left out); nested cross-validation estimates "
        f"{nest.score:.3f} ({nest.low:.3f}–{nest.high:.3f}) on new items.\n"
        f"Minimum element confidence per class: {shown_th} (stored in the run; `labeler relabel` applies them).\n"
        f"Start runs from it: labeler run {shown(toml_path)}"
    )
    doc = tuned_config(store.manifest["config"], src_dir=Path(store.manifest["config_path"]).parent,
                       dst_dir=store.run_dir, candidate=cand, examples_file=examples_path, correction=None, note=note)
    toml_path.write_text(dumps_toml(doc), encoding="utf-8")
    return toml_path


def format_elements_report(report: Mapping[str, Any]) -> str:
    items = report["items"]
    lines = [
        f"tuned on {items['n']} human annotations from {items['source']} ({items['audit_left_out']} random-audit "
        f"items left out); held-out {report['metric']} (95% bootstrap interval):",
        f"{'candidate':24s} {'correction':12s} {'micro-F1':>8s}  interval",
    ]
    for s in report["scores"]:
        if s["skipped"]:
            lines.append(f"{s['candidate']:24s} {s['correction']:12s} {'—':>8s}  skipped: {s['skipped']}")
        else:
            interval = f"{s['low']:.3f}–{s['high']:.3f}"
            lines.append(f"{s['candidate']:24s} {s['correction']:12s} {s['score']:8.3f}  {interval}")
    ch, nest = report["chosen"], report["nested"]
    th = ", ".join(f"{c} ≥ {t:.3f}" for c, t in ch["thresholds"].items()) or "none"
    lines.append(f"chosen: {ch['candidate']} with correction {ch['correction']} ({ch['score']:.3f}); thresholds: {th}")
    for name, d in report["details"].items():
        figures = ", ".join(f"{k.replace('_', ' ')} {v['value']:.3f} ({v['low']:.3f}–{v['high']:.3f})"
                            for k, v in d.items())
        lines.append(f"held-out, {name.replace('_', ' ')}: {figures}")
    lines.append(f"unbiased estimate (nested cross-validation, the whole choice repeated in each outer fold): "
                 f"{nest['score']:.3f} ({nest['low']:.3f}–{nest['high']:.3f}); the inner scores chose the winner")
    cost = report["cost"]
    lines.append(f"cost: {cost['human_labels']} human annotations; this time {cost['asked']} answers asked, "
                 f"{cost['input_tokens']:,} + {cost['output_tokens']:,} tokens (${cost['dollars']:.4f}), "
                 f"{cost['minutes']:.1f} min")
    lines.append(f"tuned task: {shown(report['tuned_toml'])}")
    if report["applied_in_place"]:
        lines.append("the run already holds these prompts' answers: " + (
            "the thresholds are applied to it in place" if ch["thresholds"] else "it stays as it is (no thresholds)"))
    if report.get("calibration"):
        lines.append(report["calibration"])
    return "\n".join(lines)
