"""The OpenAI Batch API (`[batch] enabled = true`): a run submitted as batches, at half the list price.

    plan     pending items not in the cache and in no batch yet become request lines {custom_id, method,
             url, body} (K items a line with items_per_request), in parts of at most 50,000 requests and
             200 MB; each part's JSONL file is written and recorded with its requests in one transaction
    upload   POST /v1/files (purpose "batch"). A part is first looked up by its file name, so a crash between
             the upload and recording its file id never uploads it twice
    submit   POST /v1/batches, metadata naming the run and part; first looked up by its input file id, so a
             crash between creating it and recording its id never creates a second batch
    poll     GET /v1/batches/{id} every poll_seconds until every batch has ended
    ingest   the output file's answers become results (cost at the batch price), each item cached on its
             own, in one transaction per part. A request in the error file, or missing from the output, or
             an item its answer missed, is stored as failed with the reason, and the normal path (one item a
             request, the retry layer) labels it after the batches, on `labeler run` or `labeler resume`
    cancel   POST /v1/batches/{id}/cancel (`labeler cancel RUN_DIR`); what a cancelled or expired batch
             answered is ingested, and its other items are planned again on resume

Every step is recorded in the run store (labeler.store.batch_tables) before the next begins: a run killed
at any point resumes where it was, with nothing lost and nothing submitted twice. Calls go through the
one retry layer and the one error translation, in labeler.label.batch_client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from labeler.config import TaskConfig
from labeler.errors import BackendError, RunStoreError
from labeler.label import tokens
from labeler.label.backends import parse_response, request_body
from labeler.label.batch_client import BatchClient
from labeler.label.runner import MemberWorker, Spend, answer_dists, labeled
from labeler.store import Cache, RunStore
from labeler.store.batch_tables import BatchPart, BatchRequest
from labeler.types import Answer, Completion, ItemResult, Request

log = logging.getLogger(__name__)

BATCH_PRICE = 0.5  # the Batch API's price, as a fraction of the list price
URL = "/v1/chat/completions"
ENDED = ("completed", "failed", "expired", "cancelled")
REPLANNED = ("expired", "cancelled")  # their unanswered requests go into a new batch on resume


def reached(stage: str, part: int) -> None:
    """Called at each step of a part (planned, uploaded, submitted, polled, ended, ingested), before the
    step is recorded where the name says "after": the crash tests stop the process here."""
    log.debug("batch part %d: %s", part, stage)


class _Offline:
    """The backend of a worker that only builds and reads requests: a batch member is never asked online."""

    async def complete(self, request: Request) -> Completion:
        raise RuntimeError("batch members are not asked online here")

    async def aclose(self) -> None:
        pass


@dataclass(frozen=True)
class _Line:
    body: dict[str, Any]
    item_ids: tuple[str, ...]
    keys: tuple[str, ...]
    truncated: tuple[bool, ...]


def _lines(worker: MemberWorker, store: RunStore, limit: int | None) -> Iterator[_Line]:
    """The request lines for the member's unbatched pending items; a cache hit is stored at once instead."""
    ep, methods = worker.member.endpoint, worker.task.confidence.methods
    multi = worker.multi
    group: list[tuple[str, str, bool, str]] = []  # (item id, text, truncated, cache key)

    def line(request: Request, entries: list[tuple[str, str, bool, str]]) -> _Line:
        ids, _, trunc, keys = zip(*entries, strict=True)
        return _Line(request_body(request), ids, keys, trunc)

    for count, item in enumerate(store.unbatched_pending(worker.member.name)):
        if limit is not None and count >= limit:
            break
        text, truncated = tokens.truncate(item.text, worker.task.max_input_tokens, ep.model)
        request = worker.builder.build(text) if multi is None else None
        key = request.cache_key() if request is not None else multi.identity(text)  # type: ignore[union-attr]
        hit = worker.cache.get(key)
        want = "logprob" in methods
        answer = None if hit is None else worker._read_cached(hit, text, want) if multi else None
        if hit is not None and multi is None:
            answer = worker.builder.parse(hit.choices[0], text)
        if answer is not None and answer.label is not None:  # from the cache: stored now, never submitted
            dists = answer_dists(answer, methods, worker.labels)
            base, kind = worker._base(item.id), worker.elementwise
            result = labeled(base, answer, dists, key, truncated, methods, elementwise=kind)
            store.put_result(worker._done(result, Spend()))
            continue
        if request is not None:
            yield line(request, [(item.id, text, truncated, key)])
            continue
        assert multi is not None
        group.append((item.id, text, truncated, key))
        if len(group) == multi.k:
            yield line(multi.build([t for _, t, _, _ in group]), group)
            group = []
    if group and multi is not None:
        yield line(multi.build([t for _, t, _, _ in group]), group)


def plan(task: TaskConfig, store: RunStore, worker: MemberWorker, *, limit: int | None = None) -> list[int]:
    """Write and record the parts of a member's unbatched pending items; returns the new part numbers."""
    cfg = task.batch
    folder = store.run_dir / "batch"
    folder.mkdir(exist_ok=True)
    new: list[int] = []
    lines = _lines(worker, store, limit)
    pending = next(lines, None)
    while pending is not None:
        part = store.next_batch_part()
        path = folder / f"part-{part:04d}.jsonl"
        tmp = path.with_name(path.name + ".tmp")
        count = size = 0
        m = worker.member.name
        with store.planning_batch_part() as planned, tmp.open("wb") as fh:
            while pending is not None and count < cfg.max_requests_per_file:
                cid = f"p{part}-{count + 1}"
                blob = (
                    json.dumps({"custom_id": cid, "method": "POST", "url": URL, "body": pending.body}) + "\n"
                ).encode()
                if len(blob) > cfg.max_bytes_per_file:
                    raise RunStoreError(f"one request is {len(blob):,} bytes, more than batch.max_bytes_per_file")
                if size + len(blob) > cfg.max_bytes_per_file:
                    break
                fh.write(blob)
                size += len(blob)
                count += 1
                planned.add(BatchRequest(cid, part, m, pending.item_ids, pending.keys, pending.truncated, "sent"))
                pending = next(lines, None)
            fh.flush()
            os.fsync(fh.fileno())
            os.replace(tmp, path)
            name = f"labeler-{store.run_dir.name}-part{part:04d}.jsonl"
            planned.finish(
                BatchPart(part, m, str(path), name, count, size, "planned", None, None, None, None, None, {}, 0.0)
            )
        new.append(part)
        reached("planned", part)
    store.flush()  # the cache hits stored while planning
    return new


def _error_of(line: dict[str, Any]) -> str:
    err = line.get("error") or {}
    resp = line.get("response") or {}
    body: dict[str, Any] = resp["body"] if isinstance(resp.get("body"), dict) else {}
    message = err.get("message") or (body.get("error") or {}).get("message") or "no answer"
    status = resp.get("status_code")
    return f"batch request failed{f' ({status})' if status else ''}: {' '.join(str(message).split())[:200]}"


def _texts(worker: MemberWorker, store: RunStore, item_ids: tuple[str, ...]) -> list[str]:
    """The texts a batch request asked (truncated as when it was planned): a task type scored element by element
    parses its answers against them; a single label needs none."""
    if not worker.elementwise:
        return [""] * len(item_ids)
    ep, by_id = worker.member.endpoint, store.item_texts(item_ids)
    return [tokens.truncate(by_id.get(i, ""), worker.task.max_input_tokens, ep.model)[0] for i in item_ids]


def _results(
    worker: MemberWorker, store: RunStore, files: list[Path], outcomes: list[tuple[str, str, str | None]]
) -> Iterator[ItemResult]:
    """The results in a part's output and error files; each request's outcome is appended to `outcomes`."""
    ep, methods = worker.member.endpoint, worker.task.confidence.methods
    dummy = Request(model=ep.model, messages=(), max_tokens=0)
    seen: set[str] = set()
    for path in files:
        with path.open(encoding="utf-8") as fh:
            for raw in fh:
                if not raw.strip():
                    continue
                line = json.loads(raw)
                req = store.batch_request(str(line.get("custom_id")))
                if req is None or req.custom_id in seen or req.state != "sent":
                    continue  # not ours, or ingested before
                seen.add(req.custom_id)
                resp = line.get("response") or {}
                if resp.get("status_code") != 200 or not isinstance(resp.get("body"), dict):
                    reason = _error_of(line)
                    outcomes.append((req.custom_id, "failed", reason))
                    for item_id in req.item_ids:
                        yield replace(worker._base(item_id), reason=reason)
                    continue
                try:
                    completion = parse_response(resp["body"], dummy)
                except BackendError as exc:
                    outcomes.append((req.custom_id, "failed", str(exc)))
                    for item_id in req.item_ids:
                        yield replace(worker._base(item_id), reason=f"batch answer unreadable: {exc}")
                    continue
                cost = BATCH_PRICE * (
                    completion.input_tokens * ep.price_input_per_1m + completion.output_tokens * ep.price_output_per_1m
                ) / 1e6  # fmt: skip
                spend = Spend(completion.input_tokens, completion.output_tokens, cost, attempts=1, cached=False)
                accepted: list[tuple[Answer | None, Spend]]
                texts = _texts(worker, store, req.item_ids)
                if worker.multi is None:
                    one = worker.builder.parse(completion.choices[0], texts[0])
                    if one.label is not None:
                        worker.cache.put(req.keys[0], completion)
                    accepted = [(one if one.label is not None else None, spend)]
                else:
                    accepted = worker.accept_group(req.keys, completion, spend, texts)
                outcomes.append((req.custom_id, "done", None))
                for item_id, key, trunc, (got, share) in zip(
                    req.item_ids, req.keys, req.truncated, accepted, strict=True
                ):
                    base = worker._base(item_id)
                    if got is None:  # asked again alone, after the batches
                        yield worker._done(replace(base, reason="not answered in the batch's answer"), share)
                        continue
                    dists = answer_dists(got, methods, worker.labels)
                    result = labeled(base, got, dists, key, trunc, methods, elementwise=worker.elementwise)
                    yield worker._done(result, share)


class BatchRun:
    """One run's batches: plan, upload, submit, poll, ingest — each step recorded before the next."""

    def __init__(self, task: TaskConfig, store: RunStore, cache: Cache, *, show_progress: bool = True) -> None:
        self.task, self.store, self.cache = task, store, cache
        self.show = show_progress
        self.members = {m.name: m for m in task.members}
        self.workers = {m.name: MemberWorker(task, m, _Offline(), cache) for m in task.members}
        self.clients: dict[str, BatchClient] = {}
        self.replan = True

    def client(self, member: str) -> BatchClient:
        if member not in self.clients:
            self.clients[member] = BatchClient(self.members[member].endpoint, self.task.retry)
        return self.clients[member]

    def say(self, text: str) -> None:
        if self.show:
            print(f"batch: {text}", file=sys.stderr, flush=True)

    async def advance(self, p: BatchPart) -> None:
        """Take a part as far as it goes without waiting: upload, submit; download and ingest once ended."""
        if p.state == "planned":
            file_id = await self.client(p.member).upload(Path(p.path), p.filename)
            reached("uploaded", p.part)
            self.store.update_batch_part(p.part, state="uploaded", file_id=file_id)
            p = self.store.batch_part(p.part)
        if p.state == "uploaded":
            assert p.file_id is not None
            meta = {"labeler_run": self.store.run_dir.name, "labeler_part": str(p.part)}
            b = await self.client(p.member).submit(p.file_id, self.task.batch.completion_window, meta)
            reached("submitted", p.part)
            self.store.update_batch_part(p.part, state="submitted", batch_id=b["id"], status=b.get("status"))
            self.say(f"part {p.part} ({p.requests} requests) submitted as {b['id']}")
            p = self.store.batch_part(p.part)
        if p.state == "ended":
            await self.ingest(p)

    async def poll(self, p: BatchPart) -> BatchPart:
        assert p.batch_id is not None
        b = await self.client(p.member).retrieve(p.batch_id)
        status = str(b.get("status"))
        counts = {k: int(v) for k, v in (b.get("request_counts") or {}).items() if isinstance(v, int)}
        reached("polled", p.part)
        if status in ENDED:
            self.store.update_batch_part(
                p.part,
                state="ended",
                status=status,
                counts=counts,
                output_file_id=b.get("output_file_id"),
                error_file_id=b.get("error_file_id"),
            )
            reached("ended", p.part)
        else:
            self.store.update_batch_part(p.part, status=status, counts=counts)
        return self.store.batch_part(p.part)

    async def ingest(self, p: BatchPart) -> None:
        folder = Path(p.path).parent
        files = []
        for kind, file_id in (("output", p.output_file_id), ("errors", p.error_file_id)):
            if file_id:
                dest = folder / f"part-{p.part:04d}.{kind}.jsonl"
                await self.client(p.member).download(file_id, dest)
                files.append(dest)
        outcomes: list[tuple[str, str, str | None]] = []
        results = _results(self.workers[p.member], self.store, files, outcomes)
        # `results` is consumed before `outcomes` is read: it fills the list as it goes
        self.store.ingest_batch_part(p.part, results, outcomes, replan_unanswered=p.status in REPLANNED)
        self.replan |= p.status in REPLANNED
        self.cache.flush()
        reached("ingested", p.part)
        n = self.store.batch_part(p.part)
        self.say(f"part {p.part} {p.status}: {n.counts.get('completed', 0)} requests answered, ingested")

    async def run(self, *, stop: asyncio.Event | None = None, limit: int | None = None) -> bool:
        """Plan what is pending, advance every part, and (with batch.wait) poll until every batch has ended
        and is ingested. True when no batch is left running; False when stopped or not waiting."""
        self.replan = True  # at the start, and after a cancelled or expired batch left items unanswered
        while True:
            for name, worker in self.workers.items() if self.replan else ():
                parts = plan(self.task, self.store, worker, limit=limit)
                if parts:
                    self.say(f"{name}: planned {len(parts)} part(s) in {self.store.run_dir / 'batch'}")
            self.replan = False
            for p in self.store.batch_parts(live_only=True):
                await self.advance(p)
            running = [p for p in self.store.batch_parts(live_only=True) if p.state == "submitted"]
            if not running:
                return True
            running = [await self.poll(p) for p in running]
            for p in running:
                if p.state == "ended":
                    await self.ingest(p)
            self.replan &= limit is None  # with --limit: plan once, never more than the limit
            running = [p for p in running if p.state == "submitted"]
            if not running:
                continue  # all ended: a cancelled or expired one may have left items to plan again
            if not self.task.batch.wait:
                self.say(f"still running; `labeler resume {self.store.run_dir}` collects the answers")
                return False
            self.say(
                ", ".join(f"part {p.part} {p.status} {p.counts.get('completed', 0)}/{p.requests}" for p in running)
            )
            if stop is None:
                await asyncio.sleep(self.task.batch.poll_seconds)
                continue
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.task.batch.poll_seconds)
                return False
            except TimeoutError:
                pass

    async def cancel(self) -> list[str]:
        """Cancel every batch still running; forget parts never submitted. Returns one line per part."""
        out = []
        for p in self.store.batch_parts(live_only=True):
            if p.state in ("planned", "uploaded"):
                self.store.drop_batch_part(p.part)
                out.append(f"part {p.part}: not submitted yet; dropped (resume plans its items again)")
            elif p.state == "submitted" and p.batch_id is not None:
                b = await self.client(p.member).cancel(p.batch_id)
                self.store.update_batch_part(p.part, status=str(b.get("status")))
                out.append(f"part {p.part}: batch {p.batch_id} {b.get('status')}")
        return out

    async def aclose(self) -> None:
        for c in self.clients.values():
            await c.aclose()
