"""What `labeler tune` reports: the stored report (candidates, scores, the choice, the cost) and its text."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from labeler.store import RunStore
from labeler.store.tune_tables import StoredCorrection
from labeler.tune.protocol import Score


def build_report(
    store: RunStore,
    ts: Any,  # labeler.tune.run.TuningSet (not imported: run imports this module)
    runs: Sequence[Any],  # labeler.tune.run.CandidateRun
    best: Score,
    correction: StoredCorrection,
    toml_path: Path,
    applied: bool,
    seconds: float,
) -> dict[str, Any]:
    return {
        "run": store.run_dir.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "items": {"n": len(ts.ids), "source": ts.source, "audit_left_out": ts.audit_left_out},
        "candidates": candidate_rows(runs),
        "scores": [
            {"candidate": s.candidate, "correction": s.correction, "macro_f1": s.macro_f1, "low": s.low, "high": s.high}
            for r in runs
            for s in r.scores
        ],
        "chosen": {
            "candidate": best.candidate,
            "correction": best.correction,
            "macro_f1": best.macro_f1,
            "low": best.low,
            "high": best.high,
        },
        "correction": correction.to_dict(),
        "tuned_toml": str(toml_path),
        "applied_in_place": applied,
        "cost": cost_of(len(ts.ids), runs, seconds),
    }


def candidate_rows(runs: Sequence[Any]) -> list[dict[str, Any]]:
    """Per candidate run (its .candidate, .spend, .same_prompts_as_run): what labeling it cost."""

    def cand(r: Any) -> dict[str, Any]:
        s = r.spend
        rate = s.asked / s.seconds if s.asked and s.seconds > 0 else None
        return {
            "name": r.candidate.name,
            "variant": r.candidate.variant.name,
            "strategy": r.candidate.strategy,
            "k": r.candidate.k,
            "seconds": round(s.seconds, 2),
            "asked": s.asked,
            "labels_per_s": None if rate is None else round(rate, 3),
            "input_tokens": s.input_tokens,
            "output_tokens": s.output_tokens,
            "cost": s.cost,
            "failed": s.failed,
            "same_prompts_as_run": r.same_prompts_as_run,
        }

    return [cand(r) for r in runs]


def cost_of(n_labels: int, runs: Sequence[Any], seconds: float) -> dict[str, Any]:
    """What the tuning cost: human labels, tokens and dollars this time, every answer used, minutes."""
    return {
        "human_labels": n_labels,
        "input_tokens": sum(r.spend.input_tokens for r in runs),
        "output_tokens": sum(r.spend.output_tokens for r in runs),
        "dollars": sum(r.spend.cost for r in runs),
        "asked": sum(r.spend.asked for r in runs),
        "paid_input_tokens": sum(r.spend.paid_input_tokens for r in runs),
        "paid_output_tokens": sum(r.spend.paid_output_tokens for r in runs),
        "minutes": round(seconds / 60, 2),
    }


def shown(path: str | Path) -> str:
    """A path as reports print it: relative to the current directory when it lies under it, else as given
    (so a committed example report carries no machine's paths)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def format_report(report: Mapping[str, Any]) -> str:
    items = report["items"]
    lines = [
        f"tuned on {items['n']} human labels from {items['source']} "
        f"({items['audit_left_out']} random-audit items left out); held-out macro-F1 (95% bootstrap interval):",
        f"{'candidate':24s} {'correction':24s} {'macro-F1':>8s}  interval",
    ]
    for s in sorted(report["scores"], key=lambda s: -s["macro_f1"]):
        lines.append(f"{s['candidate']:24s} {s['correction']:24s} {s['macro_f1']:8.3f}  {s['low']:.3f}–{s['high']:.3f}")
    lines.append(f"{'candidate':24s} {'asked':>6s} {'seconds':>8s} {'labels/s':>9s}")
    for c in report["candidates"]:
        rate = "cached" if c["labels_per_s"] is None else f"{c['labels_per_s']:.2f}"
        lines.append(f"{c['name']:24s} {c['asked']:6d} {c['seconds']:8.1f} {rate:>9s}")
    ch, cost = report["chosen"], report["cost"]
    lines.append(f"chosen: {ch['candidate']} with correction {ch['correction']} ({ch['macro_f1']:.3f})")
    nest = report.get("nested")
    if nest:
        lines.append(
            f"unbiased estimate (nested cross-validation, the whole choice repeated in each outer fold): "
            f"macro-F1 {nest['macro_f1']:.3f} ({nest['low']:.3f}–{nest['high']:.3f}); the inner scores above "
            "chose the winner and flatter it"
        )
    lines.append(
        f"cost: {cost['human_labels']} human labels; this time {cost['asked']} answers asked, "
        f"{cost['input_tokens']:,} + {cost['output_tokens']:,} tokens (${cost['dollars']:.4f}), "
        f"{cost['minutes']:.1f} min; "
        f"every answer used, whenever paid: {cost['paid_input_tokens']:,} + {cost['paid_output_tokens']:,} tokens"
    )
    if report.get("calibrator") is None:
        lines.append(
            "no calibrator could be fitted after the correction (too few right or wrong answers among the tuning "
            "items): a calibrator fitted earlier predates the correction; review more items and tune again"
        )
    lines.append(f"tuned task: {shown(report['tuned_toml'])}")
    if report["applied_in_place"]:
        lines.append("the run already holds these prompts' answers: the correction is applied to it in place")
    lines.append("these scores chose the candidate: judge it on items no choice saw (the audit, after labeler relabel)")
    return "\n".join(lines)
