"""`labeler review serve RUN_DIR`: the review page of our own (labeler.review.serve), loaded when it runs."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any


def cmd_serve(args: argparse.Namespace) -> int:
    from labeler.review.serve.access import Settings
    from labeler.review.serve.server import parse_reviewers, serve

    settings = Settings(
        overlap=args.overlap,
        blind_audit=args.blind_audit,
        no_suggestion=args.no_suggestion or None,
        gold_share=args.gold_share,
    )
    serve(
        args.run_dir,
        host=args.host,
        port=args.port,
        reviewers=parse_reviewers(args.reviewers),
        settings=settings,
        write=functools.partial(print, flush=True, file=sys.stdout),
    )
    return 0


def register(review: Any) -> None:
    """Add `serve` to the `labeler review` subparsers."""
    help_ = "review the queue in the browser: one item at a time, keys for everything, several reviewers"
    sp = review.add_parser("serve", help=help_, description=help_)
    sp.add_argument("run_dir", type=Path)
    sp.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    sp.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need --reviewers)")
    sp.add_argument("--reviewers", help="comma-separated names: one sign-in link each (default: you)")
    sp.add_argument("--overlap", type=int, default=1, help="reviewers per item (default 1)")
    sp.add_argument("--gold-share", type=float, default=0.0, help="mix in known-answer (gold) items as this share")
    sp.add_argument("--blind-audit", action="store_true", help="no suggestion or reason on any item; shuffled order")
    sp.add_argument("--no-suggestion", action="store_true", help="hide the LLM suggestion on every item")
    sp.set_defaults(fn=cmd_serve)
