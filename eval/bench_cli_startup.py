"""How light the command line is: `labeler --help` against `python -c "import openai"`, whole processes,
side by side, alternating, median of N runs each (wall time and peak RSS).

    python eval/bench_cli_startup.py [--runs 5]

The issue's target: labeler --help within 1.3x of importing the openai client."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time


def measure(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one whole process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    labeler = shutil.which("labeler") or os.path.join(os.path.dirname(sys.executable), "labeler")
    cmds = {
        "labeler --help": [labeler, "--help"],
        "python -c 'import openai'": [sys.executable, "-c", "import openai"],
    }
    for cmd in cmds.values():  # warm the page cache once
        measure(cmd)
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in cmds}
    for _ in range(args.runs):
        for name, cmd in cmds.items():
            samples[name].append(measure(cmd))
    med = {k: (statistics.median(w for w, _ in v), statistics.median(r for _, r in v)) for k, v in samples.items()}
    print(f"{'command':28s} {'wall (median)':>14s} {'peak RSS':>10s}   ({args.runs} alternating runs each)")
    for name, (wall, rss) in med.items():
        print(f"{name:28s} {wall:12.3f} s {rss:7.1f} MiB")
    a, b = med["labeler --help"], med["python -c 'import openai'"]
    print(f"labeler --help / import openai: wall {a[0] / b[0]:.2f}x, RSS {a[1] / b[1]:.2f}x (target: wall <= 1.3x)")


if __name__ == "__main__":
    main()
