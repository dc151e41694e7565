"""Progress: a one-line bar on a terminal (done/total, labels/s, ETA, dollars so far), plain log
lines every few seconds otherwise. With adaptive or pooled concurrency, `gauge` (set by the runner)
says the current limit, shown on the line, and whether (and for how long) the run is waiting out a
rate limit; `tick_forever` redraws the line while no item finishes, so such a wait is seen."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import TextIO


class Progress:
    def __init__(self, total: int, *, stream: TextIO | None = None, every: float | None = None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = every if every is not None else (0.2 if self.tty else 10.0)
        self.start = time.monotonic()
        self.last = self.start  # first line after `every` seconds, when the rate means something
        self.done = 0
        self.failed = 0
        self.cached = 0
        self.dollars = 0.0
        self.gauge: Callable[[], str | None] | None = None  # e.g. "concurrency 12"

    def update(self, *, status: str, cost: float, cached: bool) -> None:
        self.done += 1
        self.failed += status == "failed"
        self.cached += cached
        self.dollars += cost
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._emit(final=False)

    async def tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            if time.monotonic() - self.last >= self.every:
                self.last = time.monotonic()
                self._emit(final=False)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed
        left = max(self.total - self.done, 0)
        eta = left / rate if rate > 0 else float("inf")
        eta_s = "--" if eta == float("inf") else time.strftime("%H:%M:%S", time.gmtime(eta))
        pct = 100.0 * self.done / self.total if self.total else 100.0
        shown = self.gauge() if self.gauge is not None else None
        return (
            f"{self.done}/{self.total} ({pct:.0f}%)  {per_second(rate)} labels/s  ETA {eta_s}  "
            f"${self.dollars:.4f}  failed {self.failed}  cached {self.cached}" + (f"  {shown}" if shown else "")
        )

    def _emit(self, *, final: bool) -> None:
        if self.tty:
            width = 30
            filled = int(width * self.done / self.total) if self.total else width
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r[{bar}] {self.line()}" + ("\n" if final else ""))
        else:
            self.stream.write(f"progress: {self.line()}\n")
        self.stream.flush()

    def finish(self) -> None:
        self._emit(final=True)


def per_second(rate: float) -> str:
    """A rate as people read it: one decimal, or two significant digits below 0.1 (a slow local model at
    0.022 labels/s is not "0.0")."""
    return f"{rate:.1f}" if rate >= 0.1 or rate == 0 else f"{rate:.2g}"
