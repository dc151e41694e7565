"""The one retry layer, and the limits on how fast we ask.

`call_with_retry` retries RetryableError only, with jittered exponential backoff capped at
`max_wait`, honouring a server's retry-after (seconds or HTTP date, read by the backend) when it is
longer, up to its own cap `max_retry_after` (300 s by default). Everything else propagates at once.
A rate limit (429, or 503 with retry-after: `RetryableError.rate_limited`) spends no attempt: it is
waited out (our backoff capped at RATE_LIMIT_MAX_BACKOFF when the server names no wait) for up to
`max_rate_limited_s` from the request's first rate limit, then RateLimitedTooLong stops the run.
`Limiter` bounds requests in flight (a semaphore, held by a request across its retries: `hold`) and
requests and tokens per minute (two token buckets refilled continuously, taken per attempt: `attempt`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from tenacity.wait import wait_random_exponential

from labeler.config import RetryPolicy
from labeler.errors import RateLimitedTooLong, RetryableError

T = TypeVar("T")
# A rate limit without a retry-after lifts on the server's clock, not ours: probe every few seconds at
# most (one request per held slot), so throughput comes back within seconds of it lifting.
RATE_LIMIT_MAX_BACKOFF = 4.0


class _WaitRetryAfter:
    """Jittered exponential backoff, but never shorter than the server's retry-after, which is
    capped at `policy.max_retry_after` (not at `max_wait`: that caps only our own backoff)."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.backoff = wait_random_exponential(multiplier=policy.initial_wait, max=policy.max_wait)

    def __call__(self, state: RetryCallState) -> float:
        wait = self.backoff(state)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableError) and exc.rate_limited:
            wait = min(wait, RATE_LIMIT_MAX_BACKOFF)
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            wait = max(wait, min(exc.retry_after, self.policy.max_retry_after))
        return float(wait)


async def call_with_retry(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    on_retry: Callable[[RetryableError, int], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[T, int]:
    """Run `fn` until it succeeds or a non-retryable error or the attempt cap. Returns (result, attempts).
    `sleep` (default asyncio.sleep) waits between attempts; tests pass one that records the waits.
    Rate-limited attempts are counted in the result but not against `max_attempts`; once the request
    has waited on rate limits for `max_rate_limited_s`, RateLimitedTooLong is raised.

    The first attempt runs outside tenacity: most calls succeed at once, and setting tenacity up costs
    as much as parsing an answer. A first failure is replayed as tenacity's attempt 1, so the waits,
    the numbering and the cap are the same as if tenacity had made it."""
    try:
        return await fn(), 1
    except RetryableError as exc:
        first = exc

    me = asyncio.current_task()
    if me is not None and me.cancelling():  # cancelled while the first attempt ran: don't retry
        raise asyncio.CancelledError

    failures = 0  # attempts that count against max_attempts
    limited_since: float | None = None  # when this request was first rate limited

    def note(exc: RetryableError) -> None:
        nonlocal failures, limited_since
        if not exc.rate_limited:
            failures += 1
            return
        now = clock()
        limited_since = now if limited_since is None else limited_since
        if now - limited_since >= policy.max_rate_limited_s:
            raise RateLimitedTooLong(
                f"rate limited ({exc}) for {now - limited_since:.0f}s, past retry.max_rate_limited_s = "
                f"{policy.max_rate_limited_s:g}; wait for the limit to lift or raise retry.max_rate_limited_s",
                status=exc.status,
                request_id=exc.request_id,
            ) from exc

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if on_retry is not None and isinstance(exc, RetryableError):
            on_retry(exc, state.attempt_number)

    retrying = AsyncRetrying(
        retry=retry_if_exception_type(RetryableError),
        stop=lambda state: failures >= policy.max_attempts,
        wait=_WaitRetryAfter(policy),
        before_sleep=before_sleep,
        reraise=True,
        sleep=asyncio.sleep if sleep is None else sleep,  # looked up now: tests may patch asyncio.sleep
    )
    attempts = 0
    async for attempt in retrying:
        with attempt:
            attempts = attempt.retry_state.attempt_number
            try:
                if attempts == 1:
                    raise first
                result = await fn()
            except RetryableError as exc:
                note(exc)
                raise
    return result, attempts


class TokenBucket:
    """`rate` units per minute, up to one minute's worth banked. rate <= 0 means no limit."""

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(per_minute, 1.0)
        self.level = self.capacity if per_minute > 0 else 0.0
        self.clock = clock
        self.stamp = clock()
        self.lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    async def take(self, amount: float) -> None:
        if self.rate <= 0:
            return
        amount = min(amount, self.capacity)  # a request bigger than a minute's budget still goes, alone
        async with self.lock:
            self._refill()
            while self.level < amount:
                await asyncio.sleep((amount - self.level) / self.rate)
                self._refill()
            self.level -= amount


class Limiter:
    def __init__(self, concurrency: int, requests_per_minute: float = 0.0, tokens_per_minute: float = 0.0) -> None:
        self.semaphore = asyncio.Semaphore(concurrency)
        self.requests = TokenBucket(requests_per_minute)
        self.tokens = TokenBucket(tokens_per_minute)

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """A place among the requests in flight, for one request and all its retries."""
        async with self.semaphore:
            yield

    @asynccontextmanager
    async def attempt(self, tokens: int) -> AsyncIterator[None]:
        """One attempt, inside `hold`: within the per-minute limits."""
        await self.requests.take(1)
        await self.tokens.take(tokens)
        yield

    @asynccontextmanager
    async def slot(self, tokens: int) -> AsyncIterator[None]:
        async with self.hold(), self.attempt(tokens):
            yield
