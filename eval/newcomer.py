"""The newcomer check: a fresh clone, an empty HOME and pip cache, then the README's first command,
each stage timed.

    python eval/newcomer.py [--commands example test] [--overlay FILE ...] [--keep]

It clones this repository (its committed HEAD; `--overlay` copies the named files from the working
tree over the clone, to measure work not yet committed), runs `./run.sh example` there with HOME,
PIP_CACHE_DIR and so ~/.cache/labeler all empty, echoes its output, and prints a table of the
stages from run.sh's own `==> STAGE: N s` lines (and `labeler setup`'s `... ready in N s` lines,
which split the server from the weights), with the machine's cores and load average before and after.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGE = re.compile(r"^==> (?P<stage>.+): (?P<s>\d+) s$")
READY = re.compile(r"^setup: (?P<what>llama-server|weights \S+) ready in (?P<s>\d+) s")
LABELED = re.compile(r"^done: .*\blabeled (\d+)\b")
RATE = re.compile(r"\(([\d.]+) results/s over the run\)")
# variables that would point the newcomer at this machine's caches, venv or server
DROP = ("LABELER_CACHE_DIR", "LABELER_LLAMA_SERVER", "LABELER_CACHE", "VIRTUAL_ENV", "XDG_CACHE_HOME", "PYTHONPATH")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def base_python() -> str:
    """The interpreter this venv was made from: a newcomer's python3, without pyenv shims needing HOME."""
    return str(getattr(sys, "_base_executable", None) or sys.executable)


def fresh_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DROP}
    venv_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env.update(HOME=str(tmp / "home"), PIP_CACHE_DIR=str(tmp / "pip-cache"), PYTHON=base_python())
    for d in ("home", "pip-cache"):
        (tmp / d).mkdir()
    return env


def run_command(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> tuple[int, float, list[str]]:
    """Run `cmd`, echoing and logging its output line by line; (exit code, seconds, lines)."""
    t0 = time.monotonic()
    lines: list[str] = []
    with open(log, "a", encoding="utf-8") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            stamp = f"[{time.monotonic() - t0:6.0f} s] "
            print(stamp + line, end="", flush=True)
            out.write(stamp + line)
            lines.append(line.rstrip("\n"))
        code = proc.wait()
    return code, time.monotonic() - t0, lines


def stages(lines: list[str]) -> list[tuple[str, float]]:
    """(stage, seconds) from run.sh's stage lines; `llama-server and weights` split by setup's lines."""
    rows: list[tuple[str, float]] = []
    ready: dict[str, float] = {}
    for line in lines:
        if m := READY.match(line.strip()):
            ready[m["what"]] = float(m["s"])
        if m := STAGE.match(line.strip()):
            name, secs = m["stage"], float(m["s"])
            if name == "llama-server and weights" and "llama-server" in ready:
                server = min(ready["llama-server"], secs)
                rows += [("llama-server", server), ("weights", secs - server)]
            else:
                rows.append((name, secs))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commands", nargs="+", default=["example"], help="run.sh commands, in order")
    ap.add_argument("--repo", default=str(ROOT), help="what to clone (default: this repository)")
    ap.add_argument("--overlay", nargs="*", default=[], help="files (relative to the repo) to copy over the clone")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="labeler-newcomer-"))
    log = tmp / "newcomer.log"
    load_before = os.getloadavg()
    print(f"newcomer check in {tmp} (log: {log})")
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}; load average before: {load_before[0]:.2f}")
    try:
        t0 = time.monotonic()
        subprocess.run(["git", "clone", "--quiet", args.repo, str(tmp / "labeler")], check=True)
        clone_s = time.monotonic() - t0
        for rel in args.overlay:
            dest = tmp / "labeler" / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest)
            print(f"overlay from the working tree: {rel}")
        env = fresh_env(tmp)
        results: list[tuple[str, int, float, list[tuple[str, float]], str]] = []
        for command in args.commands:
            print(f"\n$ ./run.sh {command}   (HOME={env['HOME']}, PIP_CACHE_DIR={env['PIP_CACHE_DIR']})", flush=True)
            code, secs, lines = run_command(["./run.sh", command], tmp / "labeler", env, log)
            labeled = next((m[1] for s in lines if (m := LABELED.search(s))), "")
            rate = next((m[1] for s in lines if (m := RATE.search(s))), "")
            note = f" ({labeled} items; labeler's own figure: {rate} labels/s)" if labeled else ""
            results.append((command, code, secs, stages(lines), note))
            if code != 0:
                break
        load_after = os.getloadavg()
        print(f"\nclone: {clone_s:.1f} s; load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
        print(f"machine: {os.cpu_count()} cores, {cpu_model()}\n")
        print("| command | stage | seconds |\n|---|---|---|")
        for command, code, secs, rows, note in results:
            for name, s in rows:
                print(f"| `./run.sh {command}` | {name}{note if name == 'labeling' else ''} | {s:.0f} |")
            status = "exit 0" if code == 0 else f"FAILED, exit {code}"
            print(f"| `./run.sh {command}` | **total** ({status}) | {secs:.0f} |")
        return max((code for _, code, *_ in results), default=1)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
