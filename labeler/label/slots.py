"""How many workers a member gets, and what the progress line shows of its concurrency.

A worker is one coroutine taking items from the member's pending iterator; each holds at most one
request in flight. More workers than requests can be in flight only wait, and more than there are
pending requests (items, or groups of K items) never start one: `worker_count` caps the member's
concurrency at both, and at MAX_WORKERS, naming the cap once on stderr when the setting is above it
(a `concurrency = 10000000` typo would otherwise start ten million coroutines for five items).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol


class _Limiter(Protocol):
    def gauge(self) -> int | None: ...


class Worker(Protocol):
    """What `gauge` reads of a runner.MemberWorker."""

    @property
    def limiter(self) -> _Limiter: ...
    @property
    def limited(self) -> Mapping[int, float]: ...

MAX_WORKERS = 256  # requests in flight per member; 2 cores and one event loop gain nothing above it


def worker_count(
    slots: int, pending: int, *, k: int = 1, name: str = "default", warn: Callable[[str], None] | None = None
) -> int:
    """Workers for a member allowed `slots` requests in flight with `pending` items to label, K a request:
    min(slots, ceil(pending / k), MAX_WORKERS). `warn` gets one line when `slots` is above MAX_WORKERS."""
    requests = -(-max(pending, 0) // max(k, 1))
    n = max(0, min(slots, requests, MAX_WORKERS))
    if slots > MAX_WORKERS and warn is not None:
        who = "" if name == "default" else f" of member {name!r}"
        warn(f"concurrency {slots}{who} is above {MAX_WORKERS}; using {n}")
    return n


def warn_on_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def gauge(workers: Sequence[Worker]) -> str | None:
    """What the progress line shows of adaptive or pooled concurrency (the limit now, summed over members)
    and of a rate limit being waited out (since the oldest request still waiting on one)."""
    values = [g for w in workers if (g := w.limiter.gauge()) is not None]
    waits = [min(w.limited.values()) for w in workers if w.limited]
    shown = [f"waiting on a rate limit for {time.monotonic() - min(waits):.0f}s"] if waits else []
    shown += [f"concurrency {sum(values)}"] if values else []
    return "  ".join(shown) or None
