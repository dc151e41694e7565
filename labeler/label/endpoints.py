"""Several servers for one member (`[[model.endpoints]]`): replicas of one model, say vLLM servers.

`EndpointPool` is a Backend. Each request goes to the replica with the fewest outstanding requests for
its capacity (its `concurrency`, or its adaptive limit), within that replica's own requests/tokens per
minute. A replica whose connection fails (refused, dropped, timed out) — or that answers 5xx three
times in a row — is taken out for `endpoint_cooldown` seconds; the failed request raises RetryableError
as usual, and the one retry layer (labeler.label.retry) sends it again, to a replica that is still in.
When every replica is out, the one due back first is tried. A rate limit (429, or 503 with retry-after)
is not a failure: it slows that replica down (adaptive concurrency) and rests it for its retry-after
(RATE_LIMIT_REST without one, never past `endpoint_cooldown`), so the other replicas take its share.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from labeler.config import Endpoint
from labeler.errors import RetryableError
from labeler.label import tokens
from labeler.label.adaptive import AIMD, ceiling
from labeler.label.backends import Backend
from labeler.label.retry import TokenBucket
from labeler.types import Completion, Request

log = logging.getLogger(__name__)

FAILURES_BEFORE_OUT = 3  # 5xx answers in a row that take a replica out (a refused connection does at once)
RATE_LIMIT_REST = 1.0  # seconds a rate-limited replica gets no new requests when it names no retry-after


@dataclass
class Replica:
    endpoint: Endpoint
    backend: Backend
    control: AIMD | None = None
    outstanding: int = 0
    down_until: float = 0.0
    failures: int = 0  # retryable failures in a row
    sent: int = 0
    answered: int = 0
    taken_out: int = 0
    rate_limited: int = 0
    requests: TokenBucket = field(init=False)
    tokens: TokenBucket = field(init=False)

    def __post_init__(self) -> None:
        self.requests = TokenBucket(self.endpoint.requests_per_minute)
        self.tokens = TokenBucket(self.endpoint.tokens_per_minute)

    @property
    def capacity(self) -> int:
        return self.control.value if self.control is not None else self.endpoint.concurrency


class EndpointPool:
    """Least-outstanding-requests routing over replicas, with cool-down of failing ones."""

    limits_itself = True  # the runner adds no limiter of its own on top

    def __init__(
        self, replicas: Sequence[Replica], *, cooldown: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not replicas:
            raise ValueError("an endpoint pool needs at least one replica")
        self.replicas = list(replicas)
        self.cooldown = cooldown
        self.clock = clock
        self._cond = asyncio.Condition()

    @classmethod
    def from_endpoint(cls, ep: Endpoint, make_backend: Callable[[Endpoint], Backend]) -> EndpointPool:
        replicas = []
        for r in ep.endpoints:
            control = AIMD(r.concurrency, maximum=ceiling(r)) if r.adaptive_concurrency else None
            replicas.append(Replica(r, make_backend(r), control))
        return cls(replicas, cooldown=ep.endpoint_cooldown)

    @property
    def max_slots(self) -> int:
        return sum(ceiling(r.endpoint) for r in self.replicas)

    def gauge(self) -> int | None:
        now = self.clock()
        return sum(r.capacity for r in self.replicas if r.down_until <= now)

    def _pick(self) -> Replica | None:
        now = self.clock()
        up = [r for r in self.replicas if r.down_until <= now]
        if not up:  # all out: try the one due back first
            up = [min(self.replicas, key=lambda r: r.down_until)]
        free = [r for r in up if r.outstanding < r.capacity]
        if not free:
            return None
        return min(free, key=lambda r: r.outstanding / r.capacity)

    async def _acquire(self) -> Replica:
        async with self._cond:
            while (r := self._pick()) is None:
                await self._cond.wait()
            r.outstanding += 1
            r.sent += 1
            return r

    async def _release(self, r: Replica) -> None:
        async with self._cond:
            r.outstanding -= 1
            self._cond.notify()

    def _failed(self, r: Replica, exc: RetryableError) -> None:
        if exc.rate_limited:  # the replica is busy, not broken: rest it, the others take its share
            r.rate_limited += 1
            if r.control is not None:
                r.control.on_throttle()
            rest = min(exc.retry_after if exc.retry_after is not None else RATE_LIMIT_REST, self.cooldown)
            r.down_until = max(r.down_until, self.clock() + rest)
            return
        r.failures += 1
        if exc.status is None or r.failures >= FAILURES_BEFORE_OUT:
            if r.down_until <= self.clock():
                r.taken_out += 1
                log.warning("endpoint %s failed (%s); taken out for %gs", r.endpoint.base_url, exc, self.cooldown)
            r.down_until = self.clock() + self.cooldown

    async def complete(self, request: Request) -> Completion:
        r = await self._acquire()
        try:
            await r.requests.take(1)
            if r.endpoint.tokens_per_minute > 0:
                est = tokens.count("".join(m.content for m in request.messages), request.model) + request.max_tokens
                await r.tokens.take(est)
            start = time.monotonic()
            try:
                completion = await r.backend.complete(request)
            except RetryableError as exc:
                self._failed(r, exc)
                raise
            r.failures = 0
            r.answered += 1
            if r.control is not None:
                r.control.on_success(time.monotonic() - start)
            return completion
        finally:
            await self._release(r)

    def stats(self) -> list[dict[str, object]]:
        """Per replica: base_url, requests sent and answered, times taken out, rate-limited answers."""
        return [
            {
                "base_url": r.endpoint.base_url,
                "sent": r.sent,
                "answered": r.answered,
                "taken_out": r.taken_out,
                "rate_limited": r.rate_limited,
            }
            for r in self.replicas
        ]

    async def aclose(self) -> None:
        for r in self.replicas:
            await r.backend.aclose()
