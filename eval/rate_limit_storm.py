"""Issue 22's scenario: a rate-limit storm against the scripted server (tests/openai_stub.py, in this
process, 127.0.0.1 only). For `--storm` seconds every request gets 429 (with `retry-after: 1`, or none),
then the server answers normally; 600 items, adaptive concurrency 8 to start, 64 at most, default [retry].

Prints per scenario: the run's outcome (labeled/failed), requests during the storm and the most in any
one second, seconds from the storm's end to the first answer, and the run's wall time.

    .venv/bin/python eval/rate_limit_storm.py                 # 30 s and 60 s storms, retry-after 1 and none
    .venv/bin/python eval/rate_limit_storm.py --storm 30 --items 600
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from openai_stub import StubServer, write_task  # noqa: E402

from labeler.config import load_config  # noqa: E402
from labeler.errors import LabelerError  # noqa: E402
from labeler.label.pipeline import start_run  # noqa: E402

LABELS = ("business", "politics", "sport", "tech")
MODEL = "concurrency = 8\nadaptive_concurrency = true\nmax_concurrency = 64"


async def scenario(storm: float, retry_after: float | None, n: int) -> str:
    with tempfile.TemporaryDirectory() as tmp, StubServer(
        storm_seconds=storm, storm_retry_after=retry_after, latency=0.02
    ) as stub:
        items = [(f"e{k:04d}", LABELS[k % 4]) for k in range(n)]
        config = write_task(Path(tmp), base_url=stub.base_url, items=items, labels=LABELS, model=MODEL)
        task = load_config(config, env={})
        start = time.monotonic()
        try:
            _, summary = await start_run(task, run_dir=Path(tmp) / "run", show_progress=False)
            outcome = f"exit 0, labeled {summary.counts.get('labeled', 0)}, failed {summary.counts.get('failed', 0)}"
        except LabelerError as exc:
            outcome = f"stopped: {exc}"
        wall = time.monotonic() - start
        assert stub.storm_start is not None
        end = stub.storm_start + storm
        stormy = [s.t for s in stub.seen if s.action == "storm"]
        per_second = collections.Counter(int(t - stub.storm_start) for t in stormy)
        oks = [s.t for s in stub.seen if s.action == "ok"]
        back = f"{min(oks) - end:.1f}s" if oks else "never"
        ra = "1" if retry_after is not None else "absent"
        return (
            f"storm {storm:g}s retry-after {ra}: {outcome}; {len(stormy)} requests during the storm "
            f"(at most {max(per_second.values(), default=0)} in a second); first answer {back} after it; "
            f"wall {wall:.1f}s"
        )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--storm", type=float, action="append", help="storm seconds (repeatable; default 30 and 60)")
    p.add_argument("--items", type=int, default=600)
    p.add_argument("--retry-after", choices=("1", "absent", "both"), default="both")
    args = p.parse_args()
    storms = args.storm or [30.0, 60.0]
    ras = {"1": [1.0], "absent": [None], "both": [1.0, None]}[args.retry_after]
    for storm in storms:
        for ra in ras:
            print(asyncio.run(scenario(storm, ra, args.items)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
