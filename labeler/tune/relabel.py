"""`labeler relabel RUN_DIR`: label the corpus again under what `labeler tune` chose, paying only for the
prompts that changed (the response cache is keyed by the rendered prompt: an unchanged prompt is a hit).

The relabeled run is a new run (default: RUN_DIR-tuned beside it) started from RUN_DIR/tuned.toml, so the
old run stays as the "before". Its bias correction comes with the TOML ([correction]) and is applied by
every combine; the old run's reviews, routing queue and random audit are copied in, so the audit still
measures the new labels (the audit's design — strata by the old label, inclusion probabilities — is a
property of the sample, valid for any labels of those items); the tuning's calibrator (fitted on the
tuning items' held-out predictions, never on the audit) becomes the run's calibrator.

Routing that learns: with calibrated confidence, the low-confidence threshold that leaves a target
accuracy on the items not reviewed (labeler.tune.routing), checked on the audit items — a table for
tune.target_accuracy and TARGETS (or --target). With `target_accuracy` (--target-accuracy) that target's
threshold is stored in the new run (RunStore.put_routing_threshold), so a plain `labeler route NEW_RUN`
uses it and says where it came from; a target out of reach stores nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labeler.confidence.run import combine_run
from labeler.config import TaskConfig, load_config
from labeler.errors import TuneError
from labeler.label import pipeline
from labeler.record import records
from labeler.store import RunStore
from labeler.store.tune_tables import StoredCorrection, TunedThreshold
from labeler.tasktypes.gold import read_annotation
from labeler.tasktypes.registry import for_task
from labeler.tune.calibration import stored as stored_calibrator
from labeler.tune.routing import audit_accuracy_above, budget_table
from labeler.tune.run import shown
from labeler.tune.tasktype_run import recalibrate

TARGETS = (0.85, 0.9, 0.95, 0.98)


def tuning_digest(tuned_toml: Path) -> str:
    """What identifies a tuning: the sha256 of its tuned.toml and of the examples file beside it."""
    h = hashlib.sha256(tuned_toml.read_bytes())
    examples = tuned_toml.with_name("tuned_examples.jsonl")
    if examples.exists():
        h.update(examples.read_bytes())
    return h.hexdigest()


def _check_same_tuning(new_dir: Path, task: TaskConfig, digest: str) -> None:
    """Refuse to resume `new_dir` when it was started under another tuning: its config snapshot differs from
    the tuned TOML, or the digest it recorded (tuned.toml and its examples) differs."""
    store = RunStore.open(new_dir)
    try:
        done, snapshot = store.get_meta("tuning_digest"), store.manifest.get("config")
    finally:
        store.close()
    if snapshot != json.loads(json.dumps(task.raw)) or done not in (None, digest):
        raise TuneError(
            f"{shown(new_dir)} was relabeled under an earlier tuning; pass --run-dir DIR for a new run, "
            f"or delete {shown(new_dir)}"
        )


def relabel_run(
    run_dir: Path,
    *,
    new_dir: Path | None = None,
    targets: Sequence[float] | None = None,
    target_accuracy: float | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Relabel RUN_DIR's corpus under its tuning (see the module docstring). Returns what was done."""
    if target_accuracy is not None and not 0.0 < target_accuracy <= 1.0:
        raise TuneError(f"--target-accuracy must be a share of items in (0, 1], e.g. 0.95; got {target_accuracy}")
    old = RunStore.open(run_dir)
    try:
        tuning = old.tuning()
        if tuning is None or not Path(tuning["tuned_toml"]).exists():
            raise TuneError(f"{run_dir.name} has no tuning; run `labeler tune {run_dir}` first")
        reviews = [r for revs in old.reviews().values() for r in revs]
        queue, strata = old.queue(), old.audit_strata()
        seed = old.task().routing.seed
        input_path = Path(old.manifest["input"]["path"])
    finally:
        old.close()
    new_dir = new_dir or run_dir.parent / f"{run_dir.name}-tuned"
    task = load_config(tuning["tuned_toml"])
    digest = tuning_digest(Path(tuning["tuned_toml"]))
    started = time.monotonic()
    if (new_dir / "manifest.json").exists():
        _check_same_tuning(new_dir, task, digest)  # a resume finishes this tuning's relabel, never an older one
        summary = asyncio.run(pipeline.resume_run(new_dir, show_progress=show_progress))
    else:
        _, summary = asyncio.run(
            pipeline.start_run(task, input_path=input_path, run_dir=new_dir, show_progress=show_progress)
        )
    store = RunStore.open(new_dir)
    try:
        if reviews and not store.reviews():
            store.put_reviews(reviews)
        if queue and not store.queue():
            store.write_queue(queue, strata, seed=seed)
        store.set_meta("relabeled_from", str(run_dir))
        store.set_meta("tuning_digest", digest)
        if tuning.get("task_type") in ("multi_label", "spans"):  # the element thresholds live in the tuning
            store.put_correction(StoredCorrection.from_dict(tuning["correction"]))
        cal = tuning.get("calibrator")
        if cal is not None:  # fitted on the corrected out-of-fold predictions (labeler.tune.calibration)
            store.put_calibrator(stored_calibrator(cal, tuning["items"]["n"]))
        combine_run(store, store.task())
        calibration = recalibrate(store, store.task())  # multi-label: per-label calibration after the thresholds
        table = tuple(targets or (task.quality.tune.target_accuracy, *TARGETS))
        first = table[0] if target_accuracy is None else target_accuracy
        routing = routing_report(store, set(tuning["oof"]["ids"]), (first, *table))
        routing["target"] = first
        if target_accuracy is not None:
            routing["stored"] = store_threshold(store, routing, target_accuracy)
        report = {
            "run_dir": str(new_dir),
            "from": str(run_dir),
            "seconds": round(time.monotonic() - started, 1),
            "asked": sum(summary.counts.values()) - summary.cached,
            "cached": summary.cached,
            "input_tokens": summary.input_tokens,
            "output_tokens": summary.output_tokens,
            "cost": summary.cost,
            "routing": routing,
            "calibration": calibration,
        }
        store.put_tuning({**tuning, "relabel": report})
        return report
    finally:
        store.close()


def store_threshold(store: RunStore, routing: Mapping[str, Any], target: float) -> float | None:
    """Store the threshold of `target`'s row as the run's routing.low_confidence; None (nothing stored) when
    the target is out of reach (threshold inf)."""
    row = next(r for r in routing["rows"] if r["target"] == target)
    if not np.isfinite(row["threshold"]):
        return None
    threshold = float(row["threshold"])
    store.put_routing_threshold(TunedThreshold(threshold, f"labeler relabel --target-accuracy {target:g}", time.time()))
    return threshold


def routing_report(store: RunStore, tuning_ids: set[str], targets: Sequence[float]) -> dict[str, Any]:
    """Per target accuracy: the threshold on calibrated confidence and the reviews it needs, on the items
    tuning did not use; checked on the random audit (its items with confidence ≥ the threshold)."""
    audit = {e.item_id: e.inclusion_prob or 1.0 for e in store.queue() if e.audit}
    from labeler.humans import read_humans

    task = store.task()
    humans = read_humans(store, task.label_names)
    kind = for_task(task)
    texts = {r.id: r.text for r in store.item_rows()} if task.kind.elementwise else {}

    def truth_of(item_id: str) -> str | None:
        """The human label as the records keep labels (an annotation encoded as the run stores it)."""
        raw = humans.label(item_id)
        if raw is None or not task.kind.elementwise:
            return raw
        value = read_annotation(kind, raw, text=texts.get(item_id))
        return None if value is None else kind.encode(value)

    conf, a_conf, a_ok, a_w = [], [], [], []
    for rec in records(store):
        c = rec.calibrated_confidence if rec.calibrated_confidence is not None else rec.confidence
        if rec.label is None or c is None or rec.id in tuning_ids:
            continue
        conf.append(c)
        truth = truth_of(rec.id)
        if rec.id in audit and truth is not None:
            a_conf.append(c)
            a_ok.append(float(truth == rec.label))
            a_w.append(1.0 / audit[rec.id])
    rows = []
    for t in budget_table(np.asarray(conf), sorted(set(targets))):
        acc, low, high, n = audit_accuracy_above(np.asarray(a_conf), np.asarray(a_ok), np.asarray(a_w), t.threshold)
        rows.append(
            {
                "target": t.target,
                "threshold": t.threshold,
                "review": t.review,
                "n": t.n,
                "expected_accuracy": t.expected_accuracy,
                "audit_accuracy": acc,
                "audit_low": low,
                "audit_high": high,
                "audit_n": n,
            }
        )
    return {"items": len(conf), "audit_items": len(a_conf), "rows": rows}


def format_relabel(report: Mapping[str, Any]) -> str:
    r = report["routing"]
    new = shown(report["run_dir"])
    lines = [
        f"relabeled into {new}: of its answers {report['cached']} came from the cache (prompts that "
        f"did not change) and {report['asked']} were asked ({report['input_tokens']:,} + "
        f"{report['output_tokens']:,} tokens, ${report['cost']:.4f}); {report['seconds']:.0f}s this time",
        f"routing on the {r['items']} items tuning did not use (calibrated confidence; checked on {r['audit_items']} "
        "random-audit items):",
        f"{'target':>7s} {'threshold':>9s} {'review':>7s} {'expected acc.':>13s}  audit accuracy above it",
    ]
    for row in r["rows"]:
        th = "all" if not np.isfinite(row["threshold"]) else f"{row['threshold']:.3f}"
        audit = (
            "—"
            if not np.isfinite(row["audit_accuracy"])
            else f"{row['audit_accuracy']:.3f} ({row['audit_low']:.3f}–{row['audit_high']:.3f}, n={row['audit_n']})"
        )
        share = row["review"] / row["n"] if row["n"] else 0.0
        lines.append(
            f"{row['target']:7.2f} {th:>9s} {row['review']:5d} ({share:4.0%}) {row['expected_accuracy']:9.3f}  {audit}"
        )
    if report.get("calibration"):
        lines.append(report["calibration"])
    if not r["audit_items"]:
        lines.append(
            "no random-audit items: the expected accuracies are the calibrator's estimate alone, unchecked; to "
            f"check them, route an audit first (labeler route {shown(report['from'])} --audit-fraction 0.1, review "
            "it) and relabel again"
        )
    first = next((row for row in r["rows"] if row["target"] == r.get("target")), None)
    if first is None:
        return "\n".join(lines)
    target, th = f"{100 * first['target']:g}% accuracy on the rest", f"{first['threshold']:.3f}"
    if not np.isfinite(first["threshold"]):
        what = "stored" if "stored" in r else "to suggest"
        lines.append(
            f"{target} is out of reach (even the most confident items fall short): no threshold {what}; "
            "review more, or aim lower"
        )
    elif "stored" in r:
        lines.append(f"for {target}: threshold {th} stored in {new}; labeler route {new} uses it")
    else:
        lines.append(
            f"for {target}: labeler route {new} --threshold {th} (or store it in the run: "
            f"labeler relabel {shown(report['from'])} --target-accuracy {first['target']:g})"
        )
    return "\n".join(lines)
