"""The bare client the benchmarks measure labeler against: an `openai.AsyncOpenAI` loop that sends every
request (chat.completions.create keyword arguments), `concurrency` at a time, and nothing else. It imports
only the SDK, so a whole process running it pays no start-up of labeler's."""

from __future__ import annotations

import asyncio
from typing import Any


async def bare_round(base_url: str, requests: list[dict[str, Any]], concurrency: int, *, timeout: float = 60) -> int:
    """Send every request, `concurrency` at a time; returns how many were answered (all, or it raises)."""
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=timeout)
    it = iter(requests)
    answers: list[str] = []

    async def worker() -> None:
        for kw in it:
            resp = await client.chat.completions.create(**kw)
            answers.append(resp.choices[0].message.content or "")

    async with asyncio.TaskGroup() as tg:
        for _ in range(concurrency):
            tg.create_task(worker())
    await client.close()
    assert len(answers) == len(requests)
    return len(answers)
