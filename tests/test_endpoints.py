"""Several endpoints for one member (labeler.label.endpoints): least-outstanding routing, a failing
replica taken out for a cool-down, and a run on two real servers where one dies half way."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from batch_stub import ScaleStub
from fakes import completion
from openai_stub import write_task

from labeler.config import Endpoint, load_config
from labeler.errors import ConfigError, RetryableError
from labeler.label import pipeline
from labeler.label.endpoints import EndpointPool, Replica
from labeler.types import Completion, Message, Request

REQUEST = Request(model="m", messages=(Message("user", "x"),), max_tokens=4)
LABELS = ("business", "politics", "sport", "tech")


class Gated:
    """A backend whose answers wait for `release`; it counts what it was sent."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.release = asyncio.Event()
        self.sent = 0
        self.fail = fail

    async def complete(self, request: Request) -> Completion:
        self.sent += 1
        if self.fail is not None:
            raise self.fail
        await self.release.wait()
        return completion('{"label": "a"}')

    async def aclose(self) -> None:
        pass


def pool(*specs: tuple[int, Gated], cooldown: float = 30.0, clock: list[float] | None = None) -> EndpointPool:
    t = clock or [0.0]
    replicas = [Replica(Endpoint(base_url=f"http://r{n}/v1", concurrency=c), b) for n, (c, b) in enumerate(specs)]
    return EndpointPool(replicas, cooldown=cooldown, clock=lambda: t[0])


async def test_requests_go_to_the_replica_with_the_fewest_outstanding_for_its_capacity() -> None:
    a, b = Gated(), Gated()
    p = pool((1, a), (3, b))
    tasks = [asyncio.create_task(p.complete(REQUEST)) for _ in range(4)]
    await asyncio.sleep(0.01)
    assert (a.sent, b.sent) == (1, 3)  # each full: 1/1 and 3/3
    fifth = asyncio.create_task(p.complete(REQUEST))
    await asyncio.sleep(0.01)
    assert (a.sent, b.sent) == (1, 3)  # waits for a free slot
    b.release.set()
    await asyncio.sleep(0.01)
    assert (a.sent, b.sent) == (1, 4)  # a is still full; b had room again
    await fifth
    a.release.set()
    await asyncio.gather(*tasks, fifth)
    assert [r.outstanding for r in p.replicas] == [0, 0]
    assert p.max_slots == 4 and p.gauge() == 4


async def test_a_replica_that_fails_is_taken_out_and_comes_back_after_the_cooldown() -> None:
    clock = [0.0]
    dead = Gated(fail=RetryableError("connection failed: refused"))
    live = Gated()
    live.release.set()
    p = pool((4, dead), (4, live), cooldown=10.0, clock=clock)
    with pytest.raises(RetryableError):
        for _ in range(2):  # the first request goes to the dead one (index 0 wins the tie)
            await p.complete(REQUEST)
    assert dead.sent == 1 and p.replicas[0].down_until == 10.0
    for _ in range(5):
        await p.complete(REQUEST)
    assert (dead.sent, live.sent) == (1, 5)
    assert p.gauge() == 4  # only the live replica counts
    clock[0] = 11.0  # cooled down: tried again
    with pytest.raises(RetryableError):
        await p.complete(REQUEST)
    assert dead.sent == 2 and p.stats()[0]["taken_out"] == 2


async def test_5xx_takes_a_replica_out_only_when_it_repeats_and_429_never() -> None:
    busy = Gated(fail=RetryableError("server answered 429", status=429))
    p = pool((1, busy))
    for _ in range(5):
        with pytest.raises(RetryableError):
            await p.complete(REQUEST)
    assert p.replicas[0].down_until == 1.0  # rested for RATE_LIMIT_REST, not taken out
    assert p.stats()[0]["taken_out"] == 0 and p.stats()[0]["rate_limited"] == 5
    flaky = Gated(fail=RetryableError("server answered 503", status=503))
    q = pool((1, flaky))
    for n in range(3):
        with pytest.raises(RetryableError):
            await q.complete(REQUEST)
        assert (q.replicas[0].down_until > 0) == (n == 2)


async def test_a_rate_limited_replica_rests_for_its_retry_after_and_the_others_take_its_share() -> None:
    clock = [0.0]
    limited = Gated(fail=RetryableError("server answered 429", status=429, retry_after=5.0))
    live = Gated()
    live.release.set()
    p = pool((4, limited), (4, live), cooldown=30.0, clock=clock)
    with pytest.raises(RetryableError):
        await p.complete(REQUEST)  # index 0 wins the tie
    assert p.replicas[0].down_until == 5.0
    for _ in range(6):
        await p.complete(REQUEST)
    assert (limited.sent, live.sent) == (1, 6)
    clock[0] = 5.0  # rested: it gets its share again
    with pytest.raises(RetryableError):
        await p.complete(REQUEST)
    assert limited.sent == 2 and p.stats()[0]["taken_out"] == 0


def test_endpoints_config(tmp_path: Path) -> None:
    cfg = write_task(
        tmp_path,
        base_url="http://ignored/v1",
        items=[("a", "sport")],
        model='concurrency = 3\nendpoints = [{base_url = "http://a/v1"}, {base_url = "http://b/v1", concurrency = 8}]',
    )
    ep = load_config(cfg, env={}).primary.endpoint
    assert [(r.base_url, r.concurrency) for r in ep.endpoints] == [("http://a/v1", 3), ("http://b/v1", 8)]
    assert ep.endpoints[1].model == "stub-model"  # the rest comes from [model]
    bad = write_task(
        tmp_path / "bad", base_url="http://x/v1", items=[("a", "sport")], model='endpoints = [{model = "x"}]'
    )
    with pytest.raises(ConfigError, match=r"model.endpoints\[0\]"):
        load_config(bad, env={})


@pytest.mark.integration
async def test_one_endpoint_dies_half_way_and_the_other_labels_the_rest(tmp_path: Path) -> None:
    n_items = 400
    items = [(f"e{n:03d}", LABELS[n % 4]) for n in range(n_items)]
    with ScaleStub(latency=0.01) as a, ScaleStub(latency=0.01) as b:
        cfg = write_task(
            tmp_path,
            base_url=a.base_url,
            items=items,
            labels=LABELS,
            model=f'endpoints = [{{base_url = "{a.base_url}", concurrency = 4}}, '
            f'{{base_url = "{b.base_url}", concurrency = 4}}]\nendpoint_cooldown = 60.0\ntimeout = 5',
            retry="max_attempts = 6\ninitial_wait = 0.01\nmax_wait = 0.05",
        )
        task = load_config(cfg, env={})
        killed_at: list[int] = []

        def killer() -> None:
            while sum(a.online.values()) < n_items // 4:
                threading.Event().wait(0.005)
            killed_at.append(sum(a.online.values()))
            a.kill()

        t = threading.Thread(target=killer, daemon=True)
        t.start()
        _, summary = await pipeline.start_run(task, run_dir=tmp_path / "runs" / "r", show_progress=False)
        t.join(timeout=5)
        assert summary.counts == {"labeled": n_items}
        answered_a = sum(a.online.values())
        answered_b = sum(b.online.values())
        # before the kill the two shared the work; after it every item went to b
        assert killed_at and answered_a <= killed_at[0] + 4  # at most the ones in flight at the kill
        assert answered_a + answered_b >= n_items and answered_b >= n_items - answered_a
        assert answered_b > n_items / 2
        print(f"\nendpoint died after {killed_at[0]} answers: a answered {answered_a}, b answered {answered_b}")
