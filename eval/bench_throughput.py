"""Throughput and memory of the labeling pipeline against a zero-latency OpenAI-compatible stub.

1. labels/s of labeler (the whole pipeline: ingest, store, cache, limiter, retry layer, parsing)
   against a bare `openai.AsyncOpenAI` loop sending the same requests at the same concurrency, in
   alternating rounds, each labeler round with a fresh cache; prints the median ratio (target >= 0.9).
2. peak RSS (VmHWM) of labeling N and 10·N items, each in its own process (target: flat in N).

The stub (tests/openai_stub.py) runs in its own process. Sends traffic only to 127.0.0.1.

    python eval/bench_throughput.py                 # 2,000 items x 3 rounds; RSS at 10k and 100k
    python eval/bench_throughput.py --quick         # 500 items x 2 rounds; RSS at 2k and 20k
    python eval/bench_throughput.py --items 5000 --concurrency 16 --rss 0
    python eval/bench_throughput.py --profile       # also cProfile one labeler round (top functions)
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STUB = ROOT / "tests" / "openai_stub.py"
sys.path.insert(0, str(ROOT / "tests"))

from bare_loop import bare_round  # noqa: E402
from openai_stub import write_task  # noqa: E402

from labeler.config import TaskConfig, load_config  # noqa: E402
from labeler.label.pipeline import start_run  # noqa: E402
from labeler.label.prompts import RequestBuilder  # noqa: E402

LABELS = ("business", "politics", "sport", "tech")


def items(n: int, prefix: str = "b") -> Iterator[tuple[str, str]]:
    return ((f"{prefix}{i}", LABELS[i % len(LABELS)]) for i in range(n))


@contextmanager
def stub_process() -> Iterator[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_BASE_URL", "LABELER_CACHE")}
    proc = subprocess.Popen(
        [sys.executable, str(STUB), "--port", "0", "--latency", "0"], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("listening on "):
            raise SystemExit(f"the stub did not start: {line!r}")
        yield line.split()[-1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def request_kwargs(task: TaskConfig) -> list[dict[str, Any]]:
    """The labeler's requests for the corpus, as keyword arguments of chat.completions.create."""
    import csv

    assert task.input_path is not None
    builder = RequestBuilder.for_member(task, task.primary)
    out = []
    with task.input_path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            r = builder.build(row["text"])
            kw: dict[str, Any] = {
                "model": r.model,
                "messages": [{"role": m.role, "content": m.content} for m in r.messages],
                "max_tokens": r.max_tokens,
                "temperature": r.temperature,
            }
            if r.logprobs:
                kw.update(logprobs=True, top_logprobs=r.top_logprobs)
            if r.response_format is not None:
                kw["response_format"] = dict(r.response_format)
            out.append(kw)
    return out


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) that fn(*args, **kwargs) took."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args, **kwargs)
    return time.perf_counter() - wall, time.process_time() - cpu


async def raw_round(base_url: str, requests: list[dict[str, Any]], concurrency: int) -> None:
    """The same loop through the client's raw `post` (what labeler's backend uses): no SDK param walk,
    JSON read by hand. labeler against this one is the cost of the pipeline itself."""
    import httpx2
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=60)
    it = iter(requests)
    answers: list[str] = []

    async def worker() -> None:
        for kw in it:
            resp = await client.post("/chat/completions", body=kw, cast_to=httpx2.Response)
            answers.append(resp.json()["choices"][0]["message"]["content"] or "")

    async with asyncio.TaskGroup() as tg:
        for _ in range(concurrency):
            tg.create_task(worker())
    await client.close()
    assert len(answers) == len(requests)


def labeler_round(task: TaskConfig, work: Path, n: int, *, profile: bool = False) -> None:
    """labeler labels the corpus from scratch (new run, new cache)."""
    work.mkdir(parents=True)
    os.environ["LABELER_CACHE"] = str(work / "cache.sqlite")
    prof = cProfile.Profile() if profile else None
    if prof is not None:
        prof.enable()
    _, summary = asyncio.run(start_run(task, run_dir=work / "run", show_progress=False))
    if prof is not None:
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue())
    if summary.counts.get("labeled") != n or summary.cached:
        raise SystemExit(f"labeler round went wrong: {dict(summary.counts)}, {summary.cached} cached")


def throughput(base_url: str, work: Path, *, n: int, concurrency: int, rounds: int, profile: bool) -> float:
    config = write_task(
        work / "task", base_url=base_url, items=items(n), labels=LABELS, model=f"concurrency = {concurrency}"
    )
    task = load_config(config)
    requests = request_kwargs(task)
    asyncio.run(bare_round(base_url, requests[: min(200, n)], concurrency))  # warm up both sides
    labeler_round(task, work / "warmup", n)
    lab: list[tuple[float, float]] = []  # (labels/s, CPU ms per label) per round
    bare: list[tuple[float, float]] = []
    raw: list[tuple[float, float]] = []
    for r in range(rounds):
        order = ("labeler", "bare", "raw") if r % 2 == 0 else ("raw", "bare", "labeler")
        for which in order:
            if which == "labeler":
                wall, cpu = timed(labeler_round, task, work / f"round{r}", n)
                lab.append((n / wall, 1000 * cpu / n))
            else:
                loop = bare_round if which == "bare" else raw_round
                wall, cpu = timed(asyncio.run, loop(base_url, requests, concurrency))
                (bare if which == "bare" else raw).append((n / wall, 1000 * cpu / n))
        print(
            f"round {r + 1}: labeler {lab[-1][0]:7.1f} labels/s ({lab[-1][1]:.2f} CPU ms each)   "
            f"bare AsyncOpenAI {bare[-1][0]:7.1f} requests/s ({bare[-1][1]:.2f})   "
            f"raw-post loop {raw[-1][0]:7.1f} requests/s ({raw[-1][1]:.2f})"
        )
    lab_rate, lab_cpu = (statistics.median(x[i] for x in lab) for i in (0, 1))
    bare_rate, bare_cpu = (statistics.median(x[i] for x in bare) for i in (0, 1))
    raw_rate, raw_cpu = (statistics.median(x[i] for x in raw) for i in (0, 1))
    ratio = lab_rate / bare_rate
    print(
        f"median: labeler {lab_rate:.1f} labels/s, bare AsyncOpenAI {bare_rate:.1f} requests/s; ratio {ratio:.3f} "
        f"(target >= 0.9) at concurrency {concurrency}, {n} items\n"
        f"client CPU per item: labeler {lab_cpu:.2f} ms, bare {bare_cpu:.2f} ms; ratio {bare_cpu / lab_cpu:.3f}\n"
        f"pipeline overhead: labeler / raw-post loop = {lab_rate / raw_rate:.3f} "
        f"({raw_rate:.1f} requests/s, {raw_cpu:.2f} CPU ms each)"
    )
    if profile:
        print("cProfile of one labeler round (sorted by own time):")
        labeler_round(task, work / "profiled", n, profile=True)
    return ratio


def vm_hwm_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def rss_child(config: Path, run_dir: Path) -> None:
    """In a child process: label the corpus and print the peak RSS before and after, in KiB."""
    before = vm_hwm_kib()
    task = load_config(config)
    _, summary = asyncio.run(start_run(task, run_dir=run_dir, show_progress=False))
    print(f"{before} {vm_hwm_kib()} {summary.counts.get('labeled', 0)} {summary.seconds:.1f}")


def peak_rss(base_url: str, work: Path, *, n: int, concurrency: int) -> tuple[int, int, float]:
    """(peak RSS after imports, peak RSS over the run) in KiB and the run's seconds for n items."""
    config = write_task(
        work / f"rss{n}", base_url=base_url, items=items(n, "r"), labels=LABELS, model=f"concurrency = {concurrency}"
    )
    env = dict(os.environ, LABELER_CACHE=str(work / f"rss{n}" / "cache.sqlite"))
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(config), str(work / f"rss{n}" / "run")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    before, after, labeled, seconds = int(out[0]), int(out[1]), int(out[2]), float(out[3])
    if labeled != n:
        raise SystemExit(f"RSS run labeled {labeled} of {n} items")
    return before, after, seconds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, help="items per throughput round (default 2000; --quick 500)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--rounds", type=int, help="alternating rounds (default 3; --quick 2)")
    p.add_argument("--rss", type=int, help="smaller RSS corpus size; the larger is 10x (default 10000; --quick 2000)")
    p.add_argument("--quick", action="store_true", help="small sizes: a minute or so")
    p.add_argument("--profile", action="store_true", help="cProfile one more labeler round")
    p.add_argument("--rss-child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.rss_child:
        rss_child(*args.rss_child)
        return 0
    n = args.items or (500 if args.quick else 2000)
    rounds = args.rounds or (2 if args.quick else 3)
    rss_n = args.rss if args.rss is not None else (2000 if args.quick else 10000)

    with tempfile.TemporaryDirectory(prefix="labeler-bench-") as tmp, stub_process() as base_url:
        work = Path(tmp)
        ratio = throughput(base_url, work, n=n, concurrency=args.concurrency, rounds=rounds, profile=args.profile)
        if rss_n > 0:
            for size in (rss_n, rss_n * 10):
                before, after, seconds = peak_rss(base_url, work, n=size, concurrency=args.concurrency)
                print(
                    f"peak RSS labeling {size:>7,} items: {after / 1024:6.1f} MiB "
                    f"(after imports {before / 1024:.1f} MiB; run {seconds:.0f} s, {size / seconds:.0f} labels/s)"
                )
    return 0 if ratio >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
