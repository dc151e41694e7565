"""Adaptive concurrency (labeler.label.adaptive): the AIMD rules on a fake clock, the limiter's slots, and
a run against a server that rate-limits at a known rate, converging near it."""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import pytest
from batch_stub import ScaleStub
from openai_stub import write_task

from labeler.config import Endpoint, load_config
from labeler.errors import RetryableError
from labeler.label import pipeline
from labeler.label.adaptive import AIMD, AdaptiveLimiter, ceiling
from labeler.label.progress import Progress

LABELS = ("business", "politics", "sport", "tech")


def test_additive_increase_is_one_per_round_trip() -> None:
    c = AIMD(4, maximum=100, clock=lambda: 0.0)
    for _ in range(4):  # one round trip at limit 4
        c.on_success(0.1)
    assert c.value == 4 or c.limit == pytest.approx(5.0, abs=0.2)
    for _ in range(200):
        c.on_success(0.1)
    assert 20 <= c.value <= 22  # ~sqrt(2 * 200 + 25): +1 per limit's worth of successes


def test_a_burst_of_429s_cuts_once_per_round_trip() -> None:
    t = [0.0]
    c = AIMD(20, maximum=100, beta=0.5, clock=lambda: t[0])
    c.on_success(0.2)
    for _ in range(10):
        c.on_throttle()
    assert c.value == 10 and c.cuts == 1 and c.throttles == 10
    t[0] = 0.5
    c.on_throttle()
    assert c.value == 5
    for _ in range(10):
        t[0] += 1.0
        c.on_throttle()
    assert c.value == 1  # never below the minimum


def test_latency_far_above_the_baseline_cuts_too() -> None:
    t = [0.0]
    c = AIMD(10, maximum=100, clock=lambda: t[0])
    for _ in range(20):
        c.on_success(0.05)
    before = c.limit
    for _ in range(30):  # the server starts queueing: 4x the latency
        t[0] += 1.0
        c.on_success(0.2)
    assert c.cuts >= 1 and c.limit < before
    assert ceiling(Endpoint(concurrency=3, adaptive_concurrency=True)) == 24
    assert ceiling(Endpoint(concurrency=3, adaptive_concurrency=True, max_concurrency=5)) == 5


async def test_the_limiter_admits_as_many_as_the_limit_and_learns_from_each_request() -> None:
    lim = AdaptiveLimiter(Endpoint(concurrency=2, adaptive_concurrency=True, max_concurrency=4))
    inside = 0
    most = 0
    gate = asyncio.Event()

    async def one() -> None:
        nonlocal inside, most
        async with lim.slot(0):
            inside += 1
            most = max(most, inside)
            await gate.wait()
            inside -= 1

    tasks = [asyncio.create_task(one()) for _ in range(6)]
    await asyncio.sleep(0.01)
    assert most == 2
    gate.set()
    await asyncio.gather(*tasks)
    assert lim.control.limit > 2  # six successes
    with pytest.raises(RetryableError):
        async with lim.slot(0):
            raise RetryableError("server answered 429", status=429)
    assert lim.control.throttles == 1


@pytest.mark.integration
async def test_aimd_converges_near_a_servers_rate_limit(tmp_path: Path) -> None:
    rate, latency = 25.0, 0.2  # the server answers 25 requests/s; 5 in flight would fill it exactly
    n_items = 500
    items = [(f"a{n:03d}", LABELS[n % 4]) for n in range(n_items)]
    with ScaleStub(rate=rate, burst=rate * 0.2, latency=latency, retry_after=0.05) as stub:
        cfg = write_task(
            tmp_path,
            base_url=stub.base_url,
            items=items,
            labels=LABELS,
            model="concurrency = 1\nadaptive_concurrency = true\nmax_concurrency = 64",
            retry="max_attempts = 20\ninitial_wait = 0.02\nmax_wait = 0.2",
        )
        task = load_config(cfg, env={})
        limits: list[tuple[float, int]] = []
        progress = Progress(n_items, every=1e9)

        async def sample() -> None:
            while True:
                await asyncio.sleep(0.1)
                shown = progress.gauge() if progress.gauge is not None else None
                if shown:
                    limits.append((time.monotonic(), int(shown.split()[-1])))

        sampler = asyncio.create_task(sample())
        store = pipeline.RunStore.create(tmp_path / "run", pipeline.build_manifest(task, task.input_path, "aimd"))  # type: ignore[arg-type]
        from labeler.inputs import read_rows
        from labeler.store import Cache

        store.ingest(read_rows(task.input_path, id_column="id", text_column="text"), members=["default"])  # type: ignore[arg-type]
        cache = Cache(tmp_path / "cache.sqlite")
        from labeler.label.runner import label_pending

        controls: list[AIMD] = []
        real = AIMD.__init__

        def spy(self: AIMD, *a: object, **kw: object) -> None:
            real(self, *a, **kw)  # type: ignore[arg-type]
            controls.append(self)

        AIMD.__init__ = spy  # type: ignore[method-assign]
        try:
            async with pipeline.open_backends(task) as backends:
                await label_pending(task, store, cache, backends, progress=progress)
        finally:
            AIMD.__init__ = real  # type: ignore[method-assign]
        [control] = controls
        assert progress.line().endswith(f"concurrency {control.value}")  # the progress line shows the limit
        sampler.cancel()
        cache.close()
        assert store.status_counts() == {"labeled": n_items}
        store.close()

        times = sorted(stub.ok_times)
        half = times[len(times) // 2 :]
        goodput = (len(half) - 1) / (half[-1] - half[0])
        t_half = half[0]
        late = [v for t, v in limits if t >= t_half]
        mean_limit = statistics.mean(late)
        share_429 = stub.throttled / (stub.throttled + n_items)
        print(
            f"\nAIMD vs a server limited to {rate:.0f} requests/s at {latency * 1000:.0f} ms: goodput "
            f"{goodput:.1f}/s ({goodput / rate:.2f}x), mean concurrency limit in the second half {mean_limit:.1f} "
            f"(rate x round trip {rate * control.rtt:.1f}), 429s {stub.throttled} ({share_429:.0%} of requests); "
            f"cuts {control.cuts}, slow answers {control.slow}, smoothed latency {control.rtt * 1000:.0f} ms"
        )
        assert 0.7 * rate <= goodput <= 1.3 * rate  # the rate the server allows, within 30%
        # and the concurrency that fills it: rate x the round trip as measured (server latency + client time)
        assert 0.7 * rate * control.rtt <= mean_limit <= 1.3 * rate * control.rtt
