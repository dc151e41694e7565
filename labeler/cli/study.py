"""`labeler study RUN_DIR` (the cost/quality study) and `labeler study next RUN_DIR` (the next review batch by
an active-learning strategy). The stage is imported when the command runs, so building the parser stays cheap."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

STRATEGIES = ("random", "least_confidence", "margin", "entropy", "qbc", "coreset", "margin_coreset")

HELP = """Train a classifier on the LLM's labels, on random human labels at the same cost, and on human labels
chosen by active learning; compare them on a random test split drawn first, by macro-F1, error structure
and dollars. Writes RUN_DIR/study/ (report.md, report.html, PNGs, study.json, split.json).

`labeler study next RUN_DIR --strategy margin --batch 20` prints (and writes to RUN_DIR/study/next_batch.csv)
the next items to review, picked by a strategy from a classifier trained on the human labels so far,
leaving out the study's test split and everything already queued (the random audit included); with
--queue it appends them to the review queue. `labeler route RUN_DIR --strategy margin --batch 20` routes
afresh and adds the picks within the review budget."""


def cmd_study(args: argparse.Namespace) -> int:
    from labeler.study.data import StudyError

    words = list(args.target)
    if words[0] == "next" and len(words) == 2:
        return _next(args, Path(words[1]))
    if len(words) != 1:
        raise StudyError("usage: labeler study RUN_DIR [options]  or  labeler study next RUN_DIR [options]")
    return _study(args, Path(words[0]))


def _study(args: argparse.Namespace, run_dir: Path) -> int:
    from labeler.study.data import ListPrice
    from labeler.study.run import StudyOptions, strategy_names, study_run

    kw: dict[str, Any] = {
        "strategies": strategy_names(args.strategies),
        "repeats": args.repeats,
        "batch": args.batch or 10,
        "seed_size": args.seed_size,
        "max_labels": args.max_labels,
        "test_fraction": args.test_fraction,
        "seed": args.seed,
        "classifier": args.classifier,
        "llm_threshold": args.llm_threshold,
        "committee": args.committee,
        "n_boot": args.n_boot,
        "list_price": ListPrice(args.price_model, args.price_input, args.price_output),
        "price_per_label": args.price_per_label,
    }
    results, paths = study_run(run_dir, human_file=args.human, out_dir=args.out, opts=StudyOptions(**kw))
    for line in results.get("summary", []):
        print(line)
    eq = results["equal_cost"]
    print(f"equal-cost budget: ${eq['dollars']:.4f} = {eq['labels']} human labels; {results['timing']['total']:.1f} s")
    print(f"report: {paths['report.md']} (and {paths['report.html'].name}, PNGs, study.json)")
    return 0


def _next(args: argparse.Namespace, run_dir: Path) -> int:
    from labeler.study.live import next_batch, write_picks

    nb = next_batch(
        run_dir,
        strategy=args.strategy,
        batch=args.batch or 20,
        human_file=args.human,
        classifier=args.classifier,
        seed=args.seed if args.seed_given else None,
        test_fraction=args.test_fraction if args.fraction_given else None,
        committee=args.committee,
    )
    out = args.out or run_dir / "study" / "next_batch.csv"
    write_picks(out, nb.picks)
    print(
        f"student trained on {nb.trained_on} human labels; {nb.candidates} candidates "
        f"({nb.excluded_test} test-split items and {nb.excluded_queued} queued items left out)"
    )
    for p in nb.picks:
        print(f"{p.rank:3d}  {p.id}  {p.reason}")
    print(f"wrote {out}")
    if args.queue:
        from labeler.review.router import append_picks

        added = append_picks(run_dir, [p.id for p in nb.picks])
        print(f"queued {len(added)} items (reason active_learning) after the current queue; the audit is unchanged")
    return 0


class _Given(argparse.Action):
    """Store the value and remember that it was given (the live picker otherwise reads the study's split)."""

    def __call__(self, parser: Any, ns: argparse.Namespace, values: Any, option_string: str | None = None) -> None:
        setattr(ns, self.dest, values)
        setattr(ns, {"seed": "seed_given", "test_fraction": "fraction_given"}[self.dest], True)


def register(sub: Any) -> None:
    """Add `labeler study` to the command line's subparsers."""
    sp = sub.add_parser(
        "study",
        help="the cost/quality study: LLM vs human vs active learning, at equal cost",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sp.set_defaults(fn=cmd_study, seed_given=False, fraction_given=False)
    sp.add_argument("target", nargs="+", metavar="RUN_DIR", help="a run directory, or: next RUN_DIR")
    sp.add_argument("--human", type=Path, help="more human labels: CSV/TSV/JSONL with id, label[, reviewer]")
    sp.add_argument("--out", type=Path, help="output folder (study) or CSV (next); default under RUN_DIR/study/")
    sp.add_argument("--batch", type=int, help="labels per round (study, default 10) or batch size (next, default 20)")
    sp.add_argument("--seed", type=int, default=0, action=_Given, help="seed of the test split and the draws")
    sp.add_argument("--test-fraction", type=float, default=0.3, action=_Given, help="share of human-labeled items")
    sp.add_argument(
        "--classifier",
        default="logreg",
        help="logreg (TF-IDF + logistic regression), logreg_balanced (class_weight balanced), nb, or module:fn",
    )
    sp.add_argument("--committee", type=int, default=5, help="query-by-committee members (bagged)")
    g = sp.add_argument_group("study")
    g.add_argument("--strategies", action="append", help=f"comma-separated, default all: {','.join(STRATEGIES)}")
    g.add_argument("--repeats", type=int, default=3, help="seed sets per strategy (default 3)")
    g.add_argument("--seed-size", type=int, help="random labels before the first round (default max(2·labels, batch))")
    g.add_argument("--max-labels", type=int, help="last round's labels (default max(equal-cost budget, 300))")
    g.add_argument("--llm-threshold", type=float, default=0.7, help="confidence filter for the LLM-label student")
    g.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of the test split")
    g.add_argument("--price-model", default="gpt-4o-mini", help="list price used when the run cost nothing")
    g.add_argument("--price-input", type=float, default=0.15, help="its $ per 1M input tokens")
    g.add_argument("--price-output", type=float, default=0.60, help="its $ per 1M output tokens")
    g.add_argument("--price-per-label", type=float, help="$ per human label (default: the task's review price)")
    g = sp.add_argument_group("next")
    g.add_argument("--strategy", default="margin", choices=STRATEGIES, help="query strategy (default margin)")
    g.add_argument(
        "--queue",
        action="store_true",
        help="also append the picks to the review queue (reason active_learning; no budget applies). "
        "`labeler route RUN_DIR --strategy NAME` routes afresh and adds them within the budget",
    )
