"""Labeling at scale, measured side by side in one run, against a simulated OpenAI-compatible server in its
own process (an asyncio server answering like tests/batch_stub.py, after `latency` seconds).

1. K = 1: `labeler run` and a bare `openai.AsyncOpenAI` loop (chat.completions.create) sending the same
   requests, each as a whole process (start-up included), in alternating rounds, at latency 0 and 200 ms
   and concurrency 16 and 64; prints labeler's labels/s over the bare loop's (target >= 0.95).
2. K = 10 and 20 items a request, concurrency 64, 200 ms: labeler's labels/s, whole process (target >= 1,000
   on 2 cores; a loop with one item a request cannot pass the server's 64 / 0.2 s = 320 requests/s).
3. Peak RSS (VmHWM) of `labeler run` at 10^4, 10^5 and 10^6 items (K = 20, concurrency 64, 200 ms), and of
   `labeler export` of each run, each its own process; labels/s at each (target: RSS flat within 20%).

    python eval/bench_scale.py                      # all of it; the 10^6 run alone takes a quarter of an hour
    python eval/bench_scale.py --quick              # 500 items a K=1 round, 1 round, RSS at 10^3 and 10^4
    python eval/bench_scale.py --skip-k1 --rss 10000 100000 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

LABELS = ("business", "politics", "sport", "tech")
PY = sys.executable


# --- the simulated server --------------------------------------------------------------------------
def serve(port: int, latency: float) -> None:
    from batch_stub import ScaleStub

    stub = ScaleStub()  # only its answers: its own HTTP server is never started
    stub.httpd.server_close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                length = 0
                while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = h.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                if latency > 0:
                    await asyncio.sleep(latency)
                if not line.startswith(b"POST"):
                    payload = b'{"status": "ok"}'
                else:
                    payload = json.dumps(stub.completion(json.loads(body))).encode()
                head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(payload)
                writer.write(head + payload)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
        print(f"listening on http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


@contextmanager
def server(latency: float) -> Iterator[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_BASE_URL", "LABELER_CACHE")}
    proc = subprocess.Popen([PY, __file__, "--serve", str(latency)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("listening on "):
            raise SystemExit(f"the simulated server did not start: {line!r}")
        yield line.split()[-1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- the contenders ----------------------------------------------------------------------------------
def write_corpus(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text"])
        for i in range(n):
            w.writerow([f"s{i}", f"id=s{i} topic={LABELS[i % 4]}. Some words about it."])


def write_config(folder: Path, base_url: str, corpus: Path, *, k: int, concurrency: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "chat.j2").write_text(
        "[[system]]\nLabel the topic. Labels: {{ label_names | join(', ') }}. Answer with JSON only.\n"
        "[[user]]\n{{ text }}\n",
        encoding="utf-8",
    )
    labels = "".join(f'[[labels]]\nname = "{lab}"\ndescription = "about {lab}"\n\n' for lab in LABELS)
    config = folder / "task.toml"
    config.write_text(
        f'[task]\nname = "scale"\ntemplate = "chat.j2"\n\n{labels}[input]\npath = "{corpus}"\n\n'
        f'[model]\nbase_url = "{base_url}"\nmodel = "sim-model"\nprofile = "openai"\napi_key_env = "SIM_KEY"\n'
        f"concurrency = {concurrency}\nitems_per_request = {k}\ntimeout = 120\n",
        encoding="utf-8",
    )
    return config


def write_requests(config: Path, out: Path) -> None:
    """The requests labeler will send for the corpus (K = 1), as chat.completions.create keyword arguments."""
    from bench_throughput import request_kwargs

    from labeler.config import load_config

    with out.open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(kw) + "\n" for kw in request_kwargs(load_config(config)))


def bare_child(requests: Path, base_url: str, concurrency: int) -> None:
    """The bare AsyncOpenAI loop (eval/bare_loop.py) over the requests file; prints how many were answered."""
    from bare_loop import bare_round

    with requests.open(encoding="utf-8") as fh:
        reqs = [json.loads(line) for line in fh]
    print(asyncio.run(bare_round(base_url, reqs, concurrency, timeout=120)))


def run_child(argv: list[str]) -> None:
    """`labeler ARGV` in this process, then its peak RSS (KiB) on the last line."""
    from labeler.cli import main

    code = main(argv)
    hwm = next(
        line.split()[1] for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM")
    )
    print(f"rss {hwm}")
    sys.exit(code)


CPU: list[float] = []  # CPU seconds (user + system) of each child run by `timed`


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Run a whole process; (wall seconds, its stdout). Its CPU seconds are appended to CPU."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed: {out.stderr[-2000:]}")
    return wall, out.stdout


def env_for(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_BASE_URL",)}
    env["LABELER_CACHE"] = str(work / "cache.sqlite")  # a fresh cache: nothing is served from an earlier round
    return env


def labeler_round(config: Path, work: Path) -> float:
    work.mkdir(parents=True)
    wall, _ = timed(
        [PY, "-m", "labeler.cli", "run", str(config), "--run-dir", str(work / "run"), "--quiet"], env_for(work)
    )
    return wall


def k1(base_url: str, tmp: Path, *, n: int, concurrency: int, rounds: int, latency: float) -> float:
    folder = tmp / f"k1-{latency}-{concurrency}"
    folder.mkdir()
    corpus = folder / "items.csv"
    write_corpus(corpus, n)
    config = write_config(folder, base_url, corpus, k=1, concurrency=concurrency)
    reqs = folder / "requests.jsonl"
    write_requests(config, reqs)
    lab, bare, lab_cpu, bare_cpu = [], [], [], []
    for r in range(rounds):
        for which in ("labeler", "bare") if r % 2 == 0 else ("bare", "labeler"):
            if which == "labeler":
                lab.append(n / labeler_round(config, folder / f"round{r}"))
                lab_cpu.append(1000 * CPU[-1] / n)
                continue
            argv = [PY, __file__, "--bare-child", str(reqs), base_url, str(concurrency)]
            wall, out = timed(argv, env_for(folder))
            assert int(out.split()[-1]) == n
            bare.append(n / wall)
            bare_cpu.append(1000 * CPU[-1] / n)
    ratio = statistics.median(lab) / statistics.median(bare)
    print(
        f"K=1 latency {latency * 1000:3.0f} ms concurrency {concurrency:2d}: labeler {statistics.median(lab):7.1f} "
        f"labels/s, bare AsyncOpenAI {statistics.median(bare):7.1f} requests/s; ratio {ratio:.3f} (target >= 0.95); "
        f"CPU per label, whole process: {statistics.median(lab_cpu):.2f} vs {statistics.median(bare_cpu):.2f} ms"
        f"  [rounds: labeler {', '.join(f'{x:.0f}' for x in lab)}; bare {', '.join(f'{x:.0f}' for x in bare)}]",
        flush=True,
    )
    return ratio


def multi(base_url: str, tmp: Path, *, n: int, k: int, concurrency: int) -> float:
    folder = tmp / f"k{k}"
    folder.mkdir()
    corpus = folder / "items.csv"
    write_corpus(corpus, n)
    config = write_config(folder, base_url, corpus, k=k, concurrency=concurrency)
    rate = n / labeler_round(config, folder / "run0")
    print(
        f"K={k:2d} latency 200 ms concurrency {concurrency}: labeler {rate:7.1f} labels/s, whole process "
        f"({n:,} items; target >= 1,000); CPU {1000 * CPU[-1] / n:.3f} ms per label",
        flush=True,
    )
    return rate


def rss(base_url: str, tmp: Path, n: int) -> tuple[float, float, float]:
    """(peak RSS of `labeler run` MiB, labels/s, peak RSS of `labeler export` MiB) for n items."""
    folder = tmp / f"rss{n}"
    folder.mkdir()
    corpus = folder / "items.csv"
    write_corpus(corpus, n)
    config = write_config(folder, base_url, corpus, k=20, concurrency=64)
    run_dir = folder / "run"
    wall, out = timed(
        [PY, __file__, "--child", "run", str(config), "--run-dir", str(run_dir), "--quiet"], env_for(folder)
    )
    run_rss = int(out.split()[-1]) / 1024
    _, out = timed(
        [PY, __file__, "--child", "export", str(run_dir), "--out", str(folder / "labels.csv")], env_for(folder)
    )
    export_rss = int(out.split()[-1]) / 1024
    rows = sum(1 for _ in (folder / "labels.csv").open(encoding="utf-8")) - 1
    assert rows == n, f"exported {rows} of {n}"
    for p in (corpus, folder / "labels.csv"):
        p.unlink()
    print(
        f"{n:>9,} items: peak RSS labeling {run_rss:6.1f} MiB ({n / wall:7.1f} labels/s, {wall:6.0f} s whole "
        f"process), export {export_rss:6.1f} MiB",
        flush=True,
    )
    return run_rss, n / wall, export_rss


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, help="items per K=1 round (default 2000; --quick 500)")
    p.add_argument("--rounds", type=int, help="alternating K=1 rounds per setting (default 3; --quick 1)")
    p.add_argument("--multi-items", type=int, default=30000, help="items of the K=10 and K=20 runs")
    p.add_argument("--rss", type=int, nargs="*", help="corpus sizes for peak RSS (default 10^4 10^5 10^6)")
    p.add_argument("--skip-k1", action="store_true")
    p.add_argument("--skip-multi", action="store_true")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--serve", type=float, help=argparse.SUPPRESS)
    p.add_argument("--bare-child", nargs=3, help=argparse.SUPPRESS)
    p.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.serve is not None:
        serve(0, a.serve)
        return 0
    if a.bare_child:
        bare_child(Path(a.bare_child[0]), a.bare_child[1], int(a.bare_child[2]))
        return 0
    if a.child:
        run_child(a.child)
        return 0
    n = a.items or (500 if a.quick else 2000)
    rounds = a.rounds or (1 if a.quick else 3)
    sizes = a.rss if a.rss is not None else ([1000, 10000] if a.quick else [10_000, 100_000, 1_000_000])
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as t:
        tmp = Path(t)
        with server(0.0) as fast, server(0.2) as slow:
            if not a.skip_k1:
                for latency, url in ((0.0, fast), (0.2, slow)):
                    for c in (16, 64):
                        ok &= k1(url, tmp, n=n, concurrency=c, rounds=rounds, latency=latency) >= 0.95
            if not a.skip_multi:
                for k in (10, 20):
                    ok &= multi(slow, tmp, n=a.multi_items if not a.quick else 5000, k=k, concurrency=64) >= 1000
            results = [rss(slow, tmp, size) for size in sizes]
        if len(results) > 1:
            runs = [r[0] for r in results]
            exports = [r[2] for r in results]
            print(
                f"peak RSS, largest / smallest corpus: labeling {max(runs) / min(runs):.2f}x, "
                f"export {max(exports) / min(exports):.2f}x (target <= 1.2)"
            )
            ok &= max(runs) / min(runs) <= 1.2 and max(exports) / min(exports) <= 1.2
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
