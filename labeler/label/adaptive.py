"""Adaptive concurrency: an AIMD controller on 429s and latency (`[model] adaptive_concurrency = true`).

The limit on requests in flight grows by one per round trip's worth of successes (+1/limit per success)
and is cut to `beta` x itself on a rate limit (429, or 503 with retry-after), or when the smoothed
latency rises above `latency_factor` (3) x the lowest latency seen (the server is queueing), at most once
per round trip so that one burst of 429s counts once. It starts at `concurrency` and stays within
[1, max_concurrency] (default 8 x concurrency).
The limiters here are what the runner asks for a slot; the fixed one is retry.Limiter as it was.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from labeler.config import Endpoint
from labeler.errors import RetryableError
from labeler.label.retry import Limiter, TokenBucket


class AIMD:
    """Additive increase, multiplicative decrease of a concurrency limit. `value` is the current limit."""

    def __init__(
        self,
        initial: int,
        *,
        maximum: int,
        minimum: int = 1,
        beta: float = 0.7,
        latency_factor: float = 3.0,
        min_excess: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.minimum, self.maximum = minimum, max(maximum, minimum)
        self.limit = float(min(max(initial, minimum), self.maximum))
        self.beta, self.latency_factor, self.min_excess = beta, latency_factor, min_excess
        self.clock = clock
        self.baseline: float | None = None  # the lowest latency seen
        self.rtt = 0.0  # smoothed latency
        self.last_cut = -float("inf")
        self.cuts = 0
        self.throttles = 0
        self.slow = 0  # successes slower than latency_factor x the baseline

    @property
    def value(self) -> int:
        return max(self.minimum, int(self.limit))

    def on_success(self, latency: float) -> None:
        self.rtt = latency if self.rtt == 0.0 else 0.9 * self.rtt + 0.1 * latency
        if self.baseline is None or latency < self.baseline:
            self.baseline = latency
        if self.rtt > self.latency_factor * self.baseline and self.rtt - self.baseline > self.min_excess:
            self.slow += 1
            self._cut()
            return
        self.limit = min(float(self.maximum), self.limit + 1.0 / self.limit)

    def on_throttle(self) -> None:
        self.throttles += 1
        self._cut()

    def _cut(self) -> None:
        now = self.clock()
        if now - self.last_cut < max(self.rtt, 0.05):  # one cut per round trip
            return
        self.last_cut = now
        self.cuts += 1
        self.limit = max(float(self.minimum), self.limit * self.beta)


def ceiling(ep: Endpoint) -> int:
    """The most requests an endpoint may have in flight: concurrency, or adaptive's ceiling."""
    if not ep.adaptive_concurrency:
        return ep.concurrency
    return ep.max_concurrency or 8 * ep.concurrency


class FixedLimiter(Limiter):
    """retry.Limiter with the runner's two questions answered: how many workers, and what to show."""

    def __init__(self, ep: Endpoint) -> None:
        super().__init__(ep.concurrency, ep.requests_per_minute, ep.tokens_per_minute)
        self.max_slots = ep.concurrency

    def gauge(self) -> int | None:
        return None


class AdaptiveLimiter:
    """A slot per request, as many as the AIMD controller allows now; the outcome of each request feeds it."""

    def __init__(self, ep: Endpoint, *, control: AIMD | None = None) -> None:
        self.control = control or AIMD(ep.concurrency, maximum=ceiling(ep))
        self.max_slots = self.control.maximum
        self.requests = TokenBucket(ep.requests_per_minute)
        self.tokens = TokenBucket(ep.tokens_per_minute)
        self.in_flight = 0
        self._cond = asyncio.Condition()

    def gauge(self) -> int | None:
        return self.control.value

    async def _acquire(self) -> None:
        async with self._cond:
            await self._cond.wait_for(lambda: self.in_flight < self.control.value)
            self.in_flight += 1

    async def _release(self) -> None:
        async with self._cond:
            self.in_flight -= 1
            self._cond.notify(max(1, self.control.value - self.in_flight))

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """A place among the requests in flight, for one request and all its retries: a request waiting
        out a rate limit keeps it, so "1 in flight" means one request, retries included."""
        await self._acquire()
        try:
            yield
        finally:
            await self._release()

    @asynccontextmanager
    async def attempt(self, tokens: int) -> AsyncIterator[None]:
        """One attempt, inside `hold`. A retry finding more holders than the limit now allows (it was cut
        since) gives its place back and queues again, so the requests sent follow the limit down."""
        if self.in_flight > self.control.value:
            await self._release()
            await self._acquire()
        await self.requests.take(1)
        await self.tokens.take(tokens)
        start = time.monotonic()
        try:
            yield
        except RetryableError as exc:
            if exc.rate_limited:
                self.control.on_throttle()
            raise
        self.control.on_success(time.monotonic() - start)

    @asynccontextmanager
    async def slot(self, tokens: int) -> AsyncIterator[None]:
        async with self.hold(), self.attempt(tokens):
            yield


class PassThrough:
    """The limiter of a member whose backend limits itself (an EndpointPool): a slot is free at once."""

    def __init__(self, backend: object) -> None:
        self.backend = backend
        self.max_slots: int = getattr(backend, "max_slots", 1)

    def gauge(self) -> int | None:
        gauge = getattr(self.backend, "gauge", None)
        return gauge() if gauge is not None else None

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        yield

    @asynccontextmanager
    async def attempt(self, tokens: int) -> AsyncIterator[None]:
        yield

    @asynccontextmanager
    async def slot(self, tokens: int) -> AsyncIterator[None]:
        yield


def make_limiter(ep: Endpoint) -> FixedLimiter | AdaptiveLimiter:
    return AdaptiveLimiter(ep) if ep.adaptive_concurrency else FixedLimiter(ep)
