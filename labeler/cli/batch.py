"""`labeler cancel RUN_DIR` and `labeler batches RUN_DIR`: a run submitted through the OpenAI Batch API.

`labeler run` submits (with `[batch] enabled = true`) and `labeler resume` polls, downloads and ingests;
these two stop the batches of a run, and say where each part of it is. The stages are imported when a
command runs, so building the parser stays cheap."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any


def cmd_cancel(args: argparse.Namespace) -> int:
    from labeler.label.pipeline import cancel_run

    lines = asyncio.run(cancel_run(args.run_dir))
    for line in lines or ["no batch is running"]:
        print(line)
    if lines:
        print(f"what the batches answered is ingested by `labeler resume {args.run_dir}`, which plans the rest anew")
    return 0


def cmd_batches(args: argparse.Namespace) -> int:
    from labeler.store import RunStore

    store = RunStore.open(args.run_dir)
    try:
        parts = store.batch_parts()
        requests = store.batch_request_counts()
    finally:
        store.close()
    if not parts:
        print("no batches in this run (set [batch] enabled = true in the task to use the Batch API)")
        return 0
    for p in parts:
        done = p.counts.get("completed", 0)
        print(
            f"part {p.part} ({p.member}): {p.requests} requests, {p.bytes:,} bytes; {p.state}"
            f"{f', batch {p.batch_id} {p.status} {done}/{p.requests}' if p.batch_id else ''}"
        )
    print("requests: " + ", ".join(f"{state} {n}" for state, n in sorted(requests.items())))
    return 0


def register(sub: Any) -> None:
    """Add cancel and batches to argparse subparsers."""
    desc = "cancel the Batch API batches of a run that are still running"
    sp = sub.add_parser("cancel", help=desc, description=desc)
    sp.add_argument("run_dir", type=Path)
    sp.set_defaults(fn=cmd_cancel)

    desc = "where each Batch API part of a run is: planned, uploaded, submitted, ended or ingested"
    sp = sub.add_parser("batches", help=desc, description=desc)
    sp.add_argument("run_dir", type=Path)
    sp.set_defaults(fn=cmd_batches)
