"""`labeler tune RUN_DIR` and `labeler relabel RUN_DIR`: the human labels make the labels better (issue 12).

Each command imports its stage when it runs, so building the parser stays cheap."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

STRATEGIES = ("fixed", "balanced", "knn", "mmr")
CORRECTIONS = (
    "none", "contextual", "offsets_f1", "offsets_ll", "contextual+offsets_f1", "contextual+offsets_ll", "thresholds"
)


def cmd_tune(args: argparse.Namespace) -> int:
    from labeler.evaluate.gather import read_human_file
    from labeler.tune.run import format_report, tune_run

    dev = None if args.dev is None else [(i, lab) for i, _, lab in read_human_file(args.dev)]
    try:
        report = tune_run(
            args.run_dir,
            dev=dev,
            max_labels=args.max_labels,
            strategies=args.strategy,
            variants=args.variant,
            corrections=args.correction,
            folds=args.folds,
            seed=args.seed,
            show_progress=not args.quiet,
        )
    except KeyboardInterrupt:
        print(interrupted(args.run_dir), file=sys.stderr)
        return 130
    if report.get("task_type") in ("multi_label", "spans"):
        from labeler.tune.tasktype_run import format_elements_report

        print(format_elements_report(report))
    else:
        print(format_report(report))
    print(f"next: labeler relabel {args.run_dir}")
    return 0


def interrupted(run_dir: Path) -> str:
    """What an interrupted `labeler tune` says: a tuning is continued by running it again, not resumed."""
    from labeler.tune.run import shown

    return (
        f"labeler: tune interrupted; the answers asked so far are in the run's cache — rerun `labeler tune "
        f"{shown(run_dir)}` (same options) to continue: they are not asked or paid again"
    )


def cmd_relabel(args: argparse.Namespace) -> int:
    from labeler.tune.relabel import format_relabel, relabel_run

    report = relabel_run(
        args.run_dir,
        new_dir=args.run_dir_out,
        targets=args.target,
        target_accuracy=args.target_accuracy,
        show_progress=not args.quiet,
    )
    print(format_relabel(report))
    return 0


def register(sub: Any) -> None:
    """Add `tune` and `relabel` to the `labeler` subcommands."""
    sp = sub.add_parser(
        "tune",
        help="choose prompt variant, few-shot examples and bias correction on human labels (never the audit)",
        description="Label the human-labelled items (reviews, the gold column or --dev; never the random "
        "audit) under every prompt variant x few-shot strategy, fit the bias correction inside "
        "cross-validation folds, score each by held-out macro-F1 with bootstrap intervals, keep the best: "
        "stored in the run and written to RUN_DIR/tuned.toml. Multi-label and span runs: scored by micro-F1 "
        "(labels; exact spans), the correction a per-label (per-type) minimum element confidence.",
    )
    sp.add_argument("run_dir", type=Path)
    sp.add_argument("--dev", type=Path, help="human labels to tune on (CSV/JSONL with id,label) instead of the run's")
    sp.add_argument("--max-labels", type=int, help="use at most N human labels (default: tune.max_labels, 200)")
    sp.add_argument("--strategy", action="append", choices=STRATEGIES, help="few-shot strategies to try (repeat)")
    sp.add_argument("--variant", action="append", help="prompt variants ([[variants]] names) to try (repeat)")
    sp.add_argument(
        "--correction",
        action="append",
        choices=CORRECTIONS,
        help="corrections to try (repeat); multi-label and span tasks: none, thresholds",
    )
    sp.add_argument("--folds", type=int, help="cross-validation folds (default: tune.folds, 5)")
    sp.add_argument("--seed", type=int)
    sp.add_argument("--quiet", action="store_true", help="no progress line while the candidates are labeled")
    sp.set_defaults(fn=cmd_tune)

    sp = sub.add_parser(
        "relabel",
        help="label the corpus under the tuning (pays only for changed prompts); a new run RUN_DIR-tuned",
    )
    sp.add_argument("run_dir", type=Path)
    sp.add_argument("--run-dir", dest="run_dir_out", type=Path, help="the new run's directory")
    sp.add_argument("--target", type=float, action="append", help="target accuracy on the rest (repeat)")
    sp.add_argument(
        "--target-accuracy",
        type=float,
        help="store the threshold for this accuracy on the rest in the new run: `labeler route NEW_RUN` uses it",
    )
    sp.add_argument("--quiet", action="store_true")
    sp.set_defaults(fn=cmd_relabel)
