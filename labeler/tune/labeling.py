"""Labeling the tuning items under one candidate: through the first member, its backend and the cache, K items
a request when the run asks K (labeler.label.multi), with the run's progress line; and what it cost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from labeler.config import TaskConfig
from labeler.label.multi import MultiBuilder
from labeler.label.progress import Progress
from labeler.label.prompts import RequestBuilder
from labeler.label.runner import MemberWorker
from labeler.store import Cache
from labeler.types import Item, ItemResult

MIN_ITEMS = 20  # the fewest human-labelled items a tuning takes


@dataclass
class Spend:
    seconds: float = 0.0
    asked: int = 0  # answers not in the cache
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    failed: int = 0
    paid_input_tokens: int = 0  # the usage of every answer used, whenever it was paid (the cache keeps it)
    paid_output_tokens: int = 0


async def label_texts(
    task: TaskConfig,
    backend: Any,
    cache: Cache,
    texts: Sequence[tuple[str, str]],
    *,
    progress: Progress | None = None,
) -> tuple[dict[str, ItemResult], Spend]:
    """Label (id, text) pairs with the task's first member, concurrently, through the cache; K a request
    when the member asks K items a request (labeler.label.multi), as a run does. `progress`: the run's
    progress line (answers done, labels/s, ETA), updated per answer."""
    worker = MemberWorker(task, task.primary, backend, cache)
    k = 1 if worker.multi is None else worker.multi.k
    items = [Item(id=item_id, text=text, row=row) for row, (item_id, text) in enumerate(texts, 1)]
    groups = iter([items[i : i + k] for i in range(0, len(items), k)])
    out: dict[str, ItemResult] = {}
    spend = Spend()
    start = time.monotonic()

    async def loop() -> None:
        for group in groups:
            answered = await worker.label_group(group) if k > 1 else [await worker.label(group[0])]
            for item, r in zip(group, answered, strict=True):
                out[item.id] = r
                add(r)

    def add(r: ItemResult) -> None:
        if progress is not None:
            progress.update(status=r.status, cost=r.cost, cached=r.cached)
        spend.asked += not r.cached and r.attempts > 0
        spend.input_tokens += r.input_tokens
        spend.output_tokens += r.output_tokens
        spend.cost += r.cost
        spend.failed += r.status != "labeled"
        paid = cache.get(r.cache_key) if r.cache_key else None
        if paid is not None:
            spend.paid_input_tokens += paid.input_tokens
            spend.paid_output_tokens += paid.output_tokens

    try:
        async with asyncio.TaskGroup() as tg:
            for _ in range(task.primary.endpoint.concurrency):
                tg.create_task(loop())
    finally:
        cache.flush()
    spend.seconds = time.monotonic() - start
    return out, spend


def answer_key(task: TaskConfig) -> Callable[[str], str]:
    """What the first member's answer to a text is cached under: its request's key, or with K items a
    request its multi-item identity (labeler.label.multi)."""
    builder = RequestBuilder.for_member(task, task.primary)
    multi = MultiBuilder.for_member(task, task.primary, builder)
    return multi.identity if multi is not None else lambda text: builder.build(text).cache_key()


