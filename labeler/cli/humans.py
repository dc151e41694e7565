"""`labeler route`, `labeler review …`, `labeler calibrate` and `labeler eval`: the human side of a run.

Each command imports its stage when it runs, so building the parser stays cheap (no numpy, scikit-learn,
scipy or matplotlib until a command needs them)."""

from __future__ import annotations

import argparse
import getpass
from pathlib import Path
from typing import Any

from labeler.aggregate import METHODS
from labeler.cli import review_live, review_serve
from labeler.cli.study import STRATEGIES
from labeler.config import CONFIDENCE_METHODS

REVIEW_FORMATS = ("labelstudio", "argilla", "csv")
CALIBRATION_METHODS = (*CONFIDENCE_METHODS, "ensemble")
PROMOTE_HELP = """Append corrected items (a human or adjudicated label that differs from the LLM's, not a tie)
as few-shot examples {"text", "label"} to the task's examples file (or --examples).

Caching, honestly: the request cache key covers the rendered prompt, and a template that renders
`examples` puts them into every prompt, so after adding examples every prompt changes and a new run
pays for every item again. Do not `labeler resume` an old run after promoting; start a new run, and
route and review it again. The promoted items then appear in their own prompts: leave them out when
you measure accuracy on that corpus."""


# --- route -------------------------------------------------------------------------------------------
def cmd_route(args: argparse.Namespace) -> int:
    if args.more_reviews is not None:  # the queue is kept; the least certain consensus items go to the front
        from labeler.aggregate.requeue import format_more_reviews, more_reviews

        print(format_more_reviews(more_reviews(args.run_dir, args.more_reviews, method=args.consensus)))
        return 0
    from labeler.review.router import format_plan, route_run

    p, review = route_run(
        args.run_dir,
        max_items=args.max_items,
        max_dollars=args.max_dollars,
        audit_fraction=args.audit_fraction,
        seed=args.seed,
        threshold=args.threshold,
        strategy=args.strategy,
        batch=args.batch,
    )
    print(format_plan(p, review))
    print(f"next: labeler review export {args.run_dir} --format labelstudio|argilla|csv --out FILE")
    return 0


# --- review ------------------------------------------------------------------------------------------
def cmd_export(args: argparse.Namespace) -> int:
    from labeler.review.queue_export import export_queue

    files = export_queue(
        args.run_dir,
        args.out,
        args.format,
        blind_audit=args.blind_audit,
        no_suggestion=args.no_suggestion or None,
        overlap=args.overlap,
    )
    print("wrote " + ", ".join(str(f) for f in files))
    if args.format == "labelstudio":
        print("Label Studio: create a project with the .label_config.xml as labeling interface, import the tasks;")
        print(f"when done, export JSON and run: labeler review import {args.run_dir} EXPORT.json")
    elif args.format == "argilla":
        print("Argilla: rg.Dataset(name, settings=rg.Settings.from_json(SETTINGS)).create(), then")
        print("dataset.records.log([rg.Record.from_dict(r) for r in RECORDS]); later dataset.records.to_json(OUT)")
        print(f"and: labeler review import {args.run_dir} OUT --format argilla")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from labeler.review.agreement import format_agreement
    from labeler.review.importer import import_reviews
    from labeler.safe_text import visible

    s = import_reviews(
        args.run_dir,
        args.file,
        fmt=args.format,
        reviewer=args.reviewer,
        adjudication=args.adjudicate,
        include_drafts=args.include_drafts,
        label_control=args.label_control,
        reviewer_map=args.reviewer_map,
        other_project=args.other_project,
    )
    print(
        f"imported {s.reviews} reviews ({s.fmt}) of {s.items} items by {len(s.reviewers)} reviewer(s): "
        f"{visible(', '.join(s.reviewers))}; {s.corrections} differ from the LLM label"
    )
    print(
        f"sync: {s.added} added, {s.changed} changed, {s.unchanged} unchanged, {s.removed} removed"
        + (f"; {s.duplicates} earlier duplicate answers dropped for the latest" if s.duplicates else "")
        + (f"; {s.adjudicated} adjudicated" if s.adjudicated else "")
    )
    for w in s.warnings:
        print(f"warning: {visible(w)}")
    print(format_agreement(s.agreement))
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from labeler.review.merge import merge_run

    counts = merge_run(args.run_dir, args.out, args.format, with_text=args.with_text)
    total = sum(v for k, v in counts.items() if k != "tie")
    print(
        f"wrote {total} rows to {args.out}: {counts['human']} human, {counts['adjudicated']} adjudicated, "
        f"{counts['gold']} gold, {counts['llm']} LLM; {counts['tie']} ties between reviewers (the earliest answer "
        "among the tied labels kept; adjudicate them with `labeler review import ... --adjudicate`)"
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from labeler.aggregate.status import format_status, review_status

    print(format_status(review_status(args.run_dir, method=args.consensus, min_accuracy=args.min_accuracy)))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from labeler.review.promote import promote

    path, n = promote(args.run_dir, examples=args.examples, max_n=args.max)
    print(f"added {n} corrected items as examples to {path}")
    if n:
        print("note: every prompt now changes, so a new run pays for every item again (see `review promote -h`)")
    return 0


def cmd_tui(args: argparse.Namespace) -> int:
    from labeler.review.tui import run_tui

    run_tui(
        args.run_dir,
        reviewer=args.reviewer or getpass.getuser(),
        blind_audit=args.blind_audit,
        no_suggestion=args.no_suggestion or None,
        redo=args.redo,
    )
    return 0


# --- calibrate and eval ------------------------------------------------------------------------------
def cmd_calibrate(args: argparse.Namespace) -> int:
    from labeler.confidence.run import calibrate_path, format_reports

    reports = calibrate_path(args.run_dir, methods=args.method, n_splits=args.folds, seed=args.seed)
    print(format_reports(reports))
    if any(r.method == "ensemble" and not r.skipped for r in reports):
        print(f"calibrated confidence stored in the run; calibrators in {args.run_dir / 'calibrator.json'}")
    elif any(r.method.startswith("label ") and not r.skipped for r in reports):  # a multi-label run, per label
        print(
            "per-label calibrators stored in the run (calibrator.json: element:label NAME); the item's calibrated "
            "confidence is the lowest calibrated element confidence"
        )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from labeler.aggregate.report import annotator_metrics
    from labeler.evaluate.report import summary_sentences
    from labeler.evaluate.run import evaluate_run

    out, metrics = evaluate_run(
        args.run_dir, human_file=args.human, out_dir=args.out, n_boot=args.boot, seed=args.seed,
        extra=lambda: {"annotators": annotator_metrics(args.run_dir)},  # LLM members and reviewers side by side
    )
    for line in metrics.get("summary") or summary_sentences(metrics):
        print(line)
    print(f"report: {out / 'report.html'} (also report.md, metrics.json)")
    return 0


def register(sub: Any) -> None:
    """Add route, review {export,import,merge,promote,tui}, calibrate and eval to argparse subparsers."""
    desc = "choose the items humans should review (failed, low confidence, disagreement, active learning, audit)"
    sp = sub.add_parser("route", help=desc, description=desc)
    sp.add_argument("run_dir", type=Path)
    sp.add_argument("--max-items", type=int, help="review budget in items (default: routing.max_items)")
    sp.add_argument("--max-dollars", type=float, help="review budget in dollars, at review.price_per_label each")
    sp.add_argument("--audit-fraction", type=float, help="share of all labeled items to audit at random")
    sp.add_argument("--seed", type=int, help="seed of the audit draw (default: routing.seed)")
    sp.add_argument("--threshold", type=float, help="route items with confidence below this (routing.low_confidence)")
    sp.add_argument(
        "--strategy",
        metavar="NAME",
        help="also queue --batch items picked by this active-learning strategy from a student trained on the "
        f"human labels so far (not audit items; they count against the budget): {', '.join(STRATEGIES)}",
    )
    sp.add_argument("--batch", type=int, default=20, help="active-learning picks with --strategy (default 20)")
    sp.add_argument(
        "--more-reviews",
        type=int,
        metavar="N",
        help="instead of routing: move the N items whose consensus of LLM members and reviewers is least "
        "certain (posterior below aggregate.uncertain_below) to the front of the queue for another reviewer",
    )
    sp.add_argument("--consensus", choices=METHODS, help="aggregation method (default: aggregate.method)")
    sp.set_defaults(fn=cmd_route)

    desc = "send routed items to humans and bring their labels back"
    rp = sub.add_parser("review", help=desc, description=desc)
    rsub = rp.add_subparsers(dest="review_command", required=True)
    review_live.register(rsub)  # push / pull through the tools' APIs
    review_serve.register(rsub)  # serve: the review page of our own

    sp = rsub.add_parser("export", help="write the queue for Label Studio, Argilla or a CSV")
    sp.add_argument("run_dir", type=Path)
    sp.add_argument("--format", choices=REVIEW_FORMATS, required=True)
    sp.add_argument("--out", type=Path, required=True)
    sp.add_argument(
        "--blind-audit",
        action="store_true",
        help="keep the audit blind: no suggestion, reason or rank on any item, in a shuffled order",
    )
    sp.add_argument("--no-suggestion", action="store_true", help="hide the LLM suggestion on every item")
    sp.add_argument(
        "--overlap",
        type=int,
        default=1,
        help="reviewers per item (Argilla distribution, Label Studio maximum_annotations)",
    )
    sp.set_defaults(fn=cmd_export)

    sp = rsub.add_parser("import", help="read reviewers' labels from a tool's export (JSON) or the filled CSV")
    sp.add_argument("run_dir", type=Path)
    sp.add_argument("file", type=Path)
    sp.add_argument("--format", choices=REVIEW_FORMATS, help="default: guessed from the file")
    sp.add_argument("--reviewer", help="reviewer name for answers that do not name one")
    sp.add_argument("--adjudicate", action="store_true", help="these labels settle disagreements: they win")
    sp.add_argument("--include-drafts", action="store_true", help="also count draft answers (Argilla)")
    sp.add_argument("--label-control", default="label", help="the name of the label choice control (default: label)")
    sp.add_argument("--reviewer-map", type=Path, help="CSV with columns id,name joining reviewer ids and e-mails")
    sp.add_argument(
        "--other-project",
        action="store_true",
        help="import an export of another project than the run's (its reviews never replace the run's project's)",
    )
    sp.set_defaults(fn=cmd_import)

    sp = rsub.add_parser("merge", help="write the final dataset: human labels where reviewed, else the LLM's")
    sp.add_argument("run_dir", type=Path)
    sp.add_argument("--out", type=Path, required=True)
    sp.add_argument("--format", choices=["csv", "jsonl", "parquet"])
    sp.add_argument("--with-text", action="store_true")
    sp.set_defaults(fn=cmd_merge)

    sp = rsub.add_parser("status", help="queue progress and each reviewer's estimated accuracy; flags weak reviewers")
    sp.add_argument("run_dir", type=Path)
    sp.add_argument("--consensus", choices=METHODS, help="aggregation method (default: aggregate.method)")
    sp.add_argument("--min-accuracy", type=float, help="flag reviewers below this (default: aggregate.min_accuracy)")
    sp.set_defaults(fn=cmd_status)

    sp = rsub.add_parser(
        "promote",
        help="append corrected items as few-shot examples",
        description=PROMOTE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sp.add_argument("run_dir", type=Path)
    sp.add_argument("--examples", type=Path, help="examples JSONL (default: the task's task.examples file)")
    sp.add_argument("--max", type=int, help="add at most N examples")
    sp.set_defaults(fn=cmd_promote)

    sp = rsub.add_parser("tui", help="review the queue in the terminal (keys: 1..k label, s skip, b back, q quit)")
    sp.add_argument("run_dir", type=Path)
    sp.add_argument("--reviewer", help="your name in the reviews table (default: your login name)")
    sp.add_argument("--blind-audit", action="store_true", help="blind audit: no suggestion on any item")
    sp.add_argument("--no-suggestion", action="store_true", help="hide the LLM suggestion on every item")
    sp.add_argument("--redo", action="store_true", help="also show items you already answered")
    sp.set_defaults(fn=cmd_tui)

    text = "fit confidence calibrators on human-labelled items and apply them to the run"
    sp = sub.add_parser("calibrate", help=text, description=text)
    sp.add_argument("run_dir", type=Path)
    sp.add_argument(
        "--method",
        action="append",
        choices=CALIBRATION_METHODS,
        help="calibrate this method (repeatable; default: the task's methods and ensemble)",
    )
    sp.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the fold split")
    sp.set_defaults(fn=cmd_calibrate)

    help_ = "measure a run's labels against human labels; write a report with honest intervals"
    sp = sub.add_parser("eval", help=help_, description=help_)
    sp.add_argument("run_dir", type=Path)
    sp.add_argument("--human", type=Path, help="extra human labels: CSV/JSONL with columns id,label[,reviewer]")
    sp.add_argument("--out", type=Path, help="report folder (default: RUN_DIR/report)")
    sp.add_argument("--boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    sp.add_argument("--seed", type=int, default=0, help="seed for the bootstrap and tie-breaks")
    sp.set_defaults(fn=cmd_eval)
