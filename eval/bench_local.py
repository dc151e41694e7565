"""Embedded default, measured: accuracy / macro-F1 on the bundled corpus, labels/s, and labels/s as a
ratio of the server's own saturated throughput, side by side in one run.

One llama-server (Gemma-3-270M) serves both contenders. The corpus is cut into blocks; blocks go
alternately (A B B A ...) to labeler's full pipeline (store, cache, parsing, retries; empty cache)
and to a bare `AsyncOpenAI` loop that keeps twice as many requests in flight as the server has slots
(so the server is never idle: its saturated throughput), sending the very same requests, so both see
the same server, prompt-cache state and texts of the same kind. Accuracy is labeler's, on every
item it labeled.

    python eval/bench_local.py [--items 300] [--block 25]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import openai
from sklearn.metrics import accuracy_score, f1_score

from labeler.config import load_config
from labeler.inputs import read_rows
from labeler.label import tokens
from labeler.label.backends import OpenAIBackend
from labeler.label.local import LocalServer
from labeler.label.prompts import RequestBuilder
from labeler.label.runner import label_pending
from labeler.store import Cache, RunStore

ROOT = Path(__file__).resolve().parents[1]


async def bare_loop(client: openai.AsyncOpenAI, requests: list, concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)

    async def one(req) -> None:
        async with sem:
            await client.chat.completions.create(
                model=req.model,
                messages=[{"role": m.role, "content": m.content} for m in req.messages],
                max_tokens=req.max_tokens,
                temperature=req.temperature,
                logprobs=req.logprobs,
                top_logprobs=req.top_logprobs,
                stop=list(req.stop),
                extra_body={"grammar": req.grammar},
            )

    t0 = time.perf_counter()
    await asyncio.gather(*(one(r) for r in requests))
    return time.perf_counter() - t0


async def main(n_items: int, block: int) -> None:
    task = load_config(ROOT / "tasks" / "news_topic.toml")
    rows = [
        r
        for _, r in zip(
            range(n_items),
            read_rows(task.input_path, id_column="id", text_column="text", gold_column="label"),
            strict=False,
        )
    ]
    async with LocalServer("gemma3-270m") as base_url:
        member = replace(
            task.primary, endpoint=replace(task.primary.endpoint, base_url=base_url, profile="gemma3-270m")
        )
        task = replace(task, members=(member,))
        conc = member.endpoint.concurrency
        builder = RequestBuilder.for_member(task, member)
        client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=120)
        backend = OpenAIBackend(base_url=base_url, api_key="x", timeout=120)
        tmp = Path(tempfile.mkdtemp(prefix="bench-local-"))
        store = RunStore.create(
            tmp / "run", {"run_id": "bench", "members": [{"name": "default", "template_hash": "x"}]}
        )
        cache = Cache(tmp / "cache.sqlite")
        blocks = [rows[i : i + block] for i in range(0, len(rows), block)]
        # warm-up: the shared few-shot prefix into the server's prompt cache, for both alike
        await bare_loop(
            client, [builder.build(tokens.truncate(r.item.text, task.max_input_tokens, "x")[0]) for r in rows[:2]], conc
        )
        t_lab = t_bare = 0.0
        n_lab = n_bare = 0
        for b, chunk in enumerate(blocks):
            pipeline_turn = b % 4 in (1, 2)  # A B B A
            if pipeline_turn:
                store.conn.execute("DELETE FROM items")
                store.set_meta("ingested", "0")
                store.ingest(iter(chunk), members=["default"])
                t0 = time.perf_counter()
                await label_pending(task, store, cache, {"default": backend})
                t_lab += time.perf_counter() - t0
                n_lab += len(chunk)
            else:
                reqs = [builder.build(tokens.truncate(r.item.text, task.max_input_tokens, "x")[0]) for r in chunk]
                t_bare += await bare_loop(client, reqs, 2 * conc)  # twice the server's slots: saturated
                n_bare += len(chunk)
        await client.close()
        await backend.aclose()
        # accuracy: label every item with the pipeline (blocks the bare loop had are labeled now)
        store.conn.execute("DELETE FROM items")
        store.set_meta("ingested", "0")
        store.ingest(iter(rows), members=["default"])
        backend = OpenAIBackend(base_url=base_url, api_key="x", timeout=120)
        await label_pending(task, store, cache, {"default": backend})
        await backend.aclose()
    got = {r["item_id"]: r["label"] for r in store.iter_results()}
    y_true = [r.gold for r in rows]
    y_pred = [got.get(r.item.id) or "none" for r in rows]
    lab_rate, bare_rate = n_lab / t_lab, n_bare / t_bare
    print(f"items: {len(rows)}  labeler concurrency: {conc}, bare loop: {2 * conc}  blocks of {block}, A B B A")
    print(f"accuracy: {accuracy_score(y_true, y_pred):.3f}  macro-F1: {f1_score(y_true, y_pred, average='macro'):.3f}")
    print(f"labeler pipeline: {lab_rate:.2f} labels/s on {n_lab} items")
    print(f"bare AsyncOpenAI loop (server saturated): {bare_rate:.2f} requests/s on {n_bare} items")
    print(f"ratio labeler / saturated server: {lab_rate / bare_rate:.3f}")
    store.close()
    cache.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--block", type=int, default=25)
    a = ap.parse_args()
    asyncio.run(main(a.items, a.block))
