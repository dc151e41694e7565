"""`labeler review push` and `labeler review pull`: the live sync with Label Studio or Argilla.

Credentials come from the environment only (LABEL_STUDIO_URL + LABEL_STUDIO_API_KEY, ARGILLA_API_URL +
ARGILLA_API_KEY); --url overrides the address. The stage is imported when a command runs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

TOOLS = ("labelstudio", "argilla")


def cmd_push(args: argparse.Namespace) -> int:
    from labeler.review.live_sync import push_run

    s = push_run(
        args.run_dir,
        tool=args.tool,
        url=args.url,
        project=args.project,
        overlap=args.overlap,
        blind_audit=args.blind_audit,
        no_suggestion=args.no_suggestion or None,
        gold_share=args.gold_share,
        sdk_output=getattr(args, "debug", False),
    )
    what = "created" if s.created else "updated"
    print(
        f"{s.tool} {what} project {s.title!r} ({s.project}) at {s.url}: {s.new} new tasks, {s.already} there "
        f"already; {s.queue} queued + {s.gold} gold items, suggestion on {s.suggested}, "
        f"{s.overlap} reviewer(s) per item{', blind audit' if s.blind else ''}"
    )
    if s.more_reviews:
        print(f"{s.more_reviews} task(s) routed for more reviews ask one more reviewer than they have")
    for w in s.warnings:
        print(f"warning: {w}")
    print(f"when reviewers have answered: labeler review pull {args.run_dir} --tool {s.tool}")
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from labeler.review.live_common import format_quality
    from labeler.review.live_sync import pull_run

    s = pull_run(
        args.run_dir,
        tool=args.tool,
        url=args.url,
        project=args.project,
        min_accuracy=args.min_accuracy,
        adjudicators=args.adjudicator or (),
        sdk_output=getattr(args, "debug", False),
    )
    p = s.plan
    who = ", ".join(f"{r} ({n})" if n != r else r for r, n in sorted(s.reviewers.items()))
    print(
        f"pulled {s.answers} submitted answers from {s.tool} project {s.title!r} ({s.project}): "
        f"{p.added} added, {p.changed} changed, {p.unchanged} unchanged, {s.removed} removed; "
        f"{p.duplicates} earlier answers of a reviewer to the same item dropped for the latest; "
        f"{p.gold_answered} on gold items; {len(p.adjudicated)} adjudicated"
    )
    if p.other_origin:
        print(
            f"warning: {p.other_origin} answers left out: the same reviewer's review of the item from another "
            "project (an import with --other-project) is kept"
        )
    print(f"reviewers: {who or 'none yet'}")
    if s.quality:
        print("reviewer quality (gold items and overlaps):")
        for line in format_quality(s.quality, min_accuracy=s.min_accuracy):
            print(line)
    flagged = [q.reviewer for q in s.quality if q.flagged]
    if flagged:
        print(f"flagged: {', '.join(flagged)} below {s.min_accuracy:.0%}; check their answers before you trust them")
    return 0


def register(review: Any) -> None:
    """Add `push` and `pull` to the `labeler review` subparsers."""
    sp = review.add_parser("push", help="send the queue to a Label Studio project or Argilla dataset (live)")
    sp.add_argument("run_dir", type=Path)
    sp.add_argument("--tool", choices=TOOLS, required=True)
    sp.add_argument("--url", help="the server (default: LABEL_STUDIO_URL / ARGILLA_API_URL)")
    sp.add_argument("--project", help="project (dataset) name to create or reuse (default: '<task> review <run id>')")
    sp.add_argument("--overlap", type=int, default=1, help="reviewers per item (default 1)")
    sp.add_argument("--blind-audit", action="store_true", help="no suggestion on any item; shuffled order")
    sp.add_argument("--no-suggestion", action="store_true", help="hide the LLM suggestion on every item")
    sp.add_argument(
        "--gold-share", type=float, default=0.0, help="mix in known-answer (gold) items as this share of the tasks"
    )
    sp.set_defaults(fn=cmd_push)

    sp = review.add_parser("pull", help="bring submitted answers back from the tool (added, changed, removed)")
    sp.add_argument("run_dir", type=Path)
    sp.add_argument("--tool", choices=TOOLS, required=True)
    sp.add_argument("--url", help="the server (default: LABEL_STUDIO_URL / ARGILLA_API_URL)")
    sp.add_argument("--project", help="the project pushed to (default: the last one)")
    sp.add_argument(
        "--min-accuracy", type=float, default=0.8, help="flag reviewers below this accuracy/agreement (default 0.8)"
    )
    sp.add_argument(
        "--adjudicator",
        action="append",
        help="Argilla user whose answers settle items (repeatable; Label Studio: mark ground truth instead)",
    )
    sp.set_defaults(fn=cmd_pull)
