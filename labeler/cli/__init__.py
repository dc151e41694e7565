"""The command line. A user error prints one line that names the fix and exits 2; --debug shows the
traceback. Subcommands are thin: each calls one stage's function."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from labeler import __version__
from labeler.aggregate import METHODS
from labeler.cli import batch, humans, study, tune
from labeler.errors import LabelerError
from labeler.store.db import DatabaseError


def _print_summary(run_dir: Path | None, s: object) -> None:
    from labeler.label.progress import per_second
    from labeler.label.runner import RunSummary

    assert isinstance(s, RunSummary)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(s.counts.items()))
    rate = sum(s.counts.values()) / s.seconds if s.seconds > 0 else 0.0
    print(f"done: {counts}")
    print(
        f"actual usage: {s.input_tokens:,} input + {s.output_tokens:,} output tokens, ${s.cost:.4f}; "
        f"{s.cached} answers from the cache; {s.seconds:.1f}s ({per_second(rate)} results/s over the run)"
    )
    if s.dropped:
        print(f"dropped: {s.dropped} quoted spans not found in the item text (left out, never invented)")
    if run_dir is not None:
        print(f"run: {run_dir}")


def cmd_run(args: argparse.Namespace) -> int:
    from labeler.config import load_config
    from labeler.export import export_run
    from labeler.label.pipeline import start_run

    task = load_config(args.config)
    run_dir, summary = asyncio.run(
        start_run(
            task,
            input_path=args.input,
            run_dir=args.run_dir,
            limit=args.limit,
            show_progress=not args.quiet,
            strict=args.strict,
        )
    )
    _print_summary(run_dir, summary)
    if args.export:
        n = export_run(run_dir, args.export)
        print(f"labels: {args.export} ({n} rows)")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from labeler.label.pipeline import resume_run

    summary = asyncio.run(
        resume_run(args.run_dir, limit=args.limit, retry_failed=not args.no_retry_failed, show_progress=not args.quiet)
    )
    _print_summary(args.run_dir, summary)
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    from labeler.config import load_config
    from labeler.label.estimate import estimate, format_estimate

    print(format_estimate(estimate(load_config(args.config), args.input)))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from labeler.export import export_run

    n = export_run(args.run_dir, args.out, args.format, with_text=args.with_text, consensus=args.consensus)
    print(f"wrote {n} rows to {args.out}" + (f" (label: the {args.consensus} consensus)" if args.consensus else ""))
    return 0


def cmd_setup(args: argparse.Namespace) -> int:
    from labeler.label.local import build_server, install_model

    for name in args.model:  # weights first: setup checks the prebuilt server on them
        print(f"model {name}: {install_model(name)}")
    print(f"llama-server: {build_server(prebuilt=not args.from_source)}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from labeler.label.local import doctor

    ok_all = True
    for what, ok, detail in doctor():
        ok_all &= ok or what in ("cmake", "g++", "model smollm2-135m")
        print(f"{'ok     ' if ok else 'MISSING'} {what:28s} {detail}")
    return 0 if ok_all else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="labeler", description="Label text with LLMs first; send the doubtful part to humans."
    )
    p.add_argument("--version", action="version", version=f"labeler {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(fn=fn)
        return sp

    sp = add("run", cmd_run, "label a corpus: a new run under runs/")
    sp.add_argument("config", type=Path)
    sp.add_argument("--input", type=Path, help="the corpus (default: input.path in the config)")
    sp.add_argument("--run-dir", type=Path, help="the run's directory (default: runs/<timestamp>-<task>)")
    sp.add_argument("--limit", type=int, help="label at most N items (the rest stay pending for resume)")
    sp.add_argument("--export", type=Path, help="also export the labels to this file (.csv/.jsonl/.parquet)")
    sp.add_argument("--quiet", action="store_true", help="no progress output")
    sp.add_argument(
        "--strict",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="refuse a CSV whose quoted field swallows what reads as further rows (an unterminated quote); "
        "--no-strict warns and keeps them as text",
    )

    sp = add("resume", cmd_resume, "finish a run that was interrupted (never pays twice for an answer)")
    sp.add_argument("run_dir", type=Path)
    sp.add_argument("--limit", type=int)
    sp.add_argument("--no-retry-failed", action="store_true", help="leave items that failed as failed")
    sp.add_argument("--quiet", action="store_true")

    sp = add("estimate", cmd_estimate, "count tokens and dollars before a run; sends nothing")
    sp.add_argument("config", type=Path)
    sp.add_argument("--input", type=Path)

    sp = add("export", cmd_export, "write a run's labels with confidence and provenance")
    sp.add_argument("run_dir", type=Path)
    sp.add_argument("--format", choices=["csv", "jsonl", "parquet"])
    sp.add_argument("--out", type=Path, required=True)
    sp.add_argument("--with-text", action="store_true", help="include the item text")
    sp.add_argument("--consensus", choices=METHODS, help="label = the consensus of every LLM member and reviewer")

    sp = add("setup", cmd_setup, "install llama-server and the embedded model(s), once")
    sp.add_argument("--model", action="append", default=None, help="embedded model to install (default: gemma3-270m)")
    sp.add_argument(
        "--from-source",
        action="store_true",
        help="build llama-server from the llama.cpp sources instead of installing the prebuilt xllamacpp wheel",
    )

    add("doctor", cmd_doctor, "say what the embedded default has and what is missing")

    humans.register(sub)
    study.register(sub)
    tune.register(sub)
    batch.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "model", "x") is None:
        args.model = ["gemma3-270m"]
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.fn(args))
    except LabelerError as exc:
        if args.debug:
            raise
        print(f"labeler: error: {exc}", file=sys.stderr)
        return 2
    except DatabaseError as exc:  # the store translates what it expects; anything else still gets one line
        if args.debug:
            raise
        print(f"labeler: error: the run's database failed ({exc}); retry, or rerun with --debug", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `labeler route ... | head -1`: the reader has gone; end quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's last flush does not fail again
        return 141
    except KeyboardInterrupt:
        print("labeler: interrupted; what was labeled is saved — `labeler resume RUN_DIR` goes on", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
