"""Labeling: every pending item of every member, concurrently, each result stored as it arrives.

For one item and one member: truncate the text to the token budget, build the request, take the
answer from the cache or from the backend (through the limiter and the retry layer), parse it,
re-ask once if it is not a label, draw self-consistency samples if asked, and write one ItemResult
(labeled, or failed with the raw output and the reason). Nothing is dropped.

The task type (labeler.tasktypes, through the request builder) decides how the answer is constrained and
parsed; for multi_label and spans the item's text is handed to the parser (spans are aligned to it), the
stored label is the encoded annotation, and the confidence distributions are per element: the share of the
self-consistency samples that produced each label or span (labeler.confidence.elements).

With `items_per_request = K` a worker takes K items at a time and asks them in one request
(labeler.label.multi); each item is stored, costed (its share of the tokens) and cached on its own, and
an item the answer misses or garbles is asked again alone, through the path above. For multi_label and
spans the K-item answer is the type's own object per id, parsed against each item's text
(labeler.label.multi_elements). Requests in flight
are bounded by the member's limiter (fixed, or adaptive: labeler.label.adaptive) or, for a member with
several endpoints, by the pool that routes them (labeler.label.endpoints).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from labeler.confidence.distributions import vote_dist
from labeler.confidence.elements import answer_elements
from labeler.config import Member, TaskConfig
from labeler.errors import BackendError, FatalError, RateLimitedTooLong, RetryableError, TemplateError, first_error
from labeler.label import tokens
from labeler.label.adaptive import AdaptiveLimiter, FixedLimiter, PassThrough, make_limiter
from labeler.label.backends import Backend
from labeler.label.multi import MultiBuilder, item_completion, read_cached, shares
from labeler.label.multi_elements import multi_builder
from labeler.label.outcome import RunSummary as RunSummary  # re-exported: pipeline and the CLI import it here
from labeler.label.outcome import Spend, answer_dists, labeled, spend_shares
from labeler.label.profiles import profile_for
from labeler.label.progress import Progress
from labeler.label.prompts import RequestBuilder, answer_format
from labeler.label.retry import call_with_retry
from labeler.label.slots import gauge, warn_on_stderr, worker_count
from labeler.store import Cache, RunStore
from labeler.types import Answer, Completion, Item, ItemResult, Message, Request

log = logging.getLogger(__name__)

ABORT_STATUSES = {401, 403, 404}  # every further request would fail the same way


@dataclass
class MemberWorker:
    task: TaskConfig
    member: Member
    backend: Backend
    cache: Cache
    builder: RequestBuilder = field(init=False)
    limiter: FixedLimiter | AdaptiveLimiter | PassThrough = field(init=False)
    multi: MultiBuilder | None = field(init=False)
    consecutive_failures: int = 0
    # items in a row that the server rejected outright with the same status (400, 422, ...), and it
    consecutive_fatal: int = 0
    last_fatal: FatalError | None = None
    limited: dict[int, float] = field(default_factory=dict)  # request -> when it was first rate limited

    def __post_init__(self) -> None:
        ep = self.member.endpoint
        self.builder = RequestBuilder.for_member(self.task, self.member)
        pool = getattr(self.backend, "limits_itself", False)  # an EndpointPool: each replica has its limits
        self.limiter = PassThrough(self.backend) if pool else make_limiter(ep)
        self.multi = multi_builder(self.task, self.member, self.builder)
        self.json_answer = answer_format(self.task, self.builder.profile) == "json"
        self.labels = self.task.label_names
        self.elementwise = self.builder.kind.elementwise  # multi_label, spans: confidence per element

    async def _complete(self, request: Request, spend: Spend, *, use_cache: bool = True) -> tuple[Completion, str]:
        key = request.cache_key()
        if use_cache:
            hit = self.cache.get(key)
            if hit is not None:
                return hit, key
        ep = self.member.endpoint
        est = 0  # counting the prompt's tokens costs as much as the rest of the request: only for a limit
        if ep.tokens_per_minute > 0 and not isinstance(self.limiter, PassThrough):
            est = tokens.count("".join(m.content for m in request.messages), request.model) + request.max_tokens

        async def once() -> Completion:
            async with self.limiter.attempt(est):
                return await self.backend.complete(request)

        def on_retry(exc: RetryableError, attempt: int) -> None:
            log.debug("retrying (%d) after: %s", attempt, exc)
            if exc.rate_limited:
                self.limited.setdefault(id(me), time.monotonic())

        me = object()
        try:  # the request keeps its place among those in flight while it waits to retry
            async with self.limiter.hold():
                completion, attempts = await call_with_retry(once, self.task.retry, on_retry=on_retry)
        finally:
            self.limited.pop(id(me), None)
        spend.cached = False
        spend.attempts += attempts
        spend.input_tokens += completion.input_tokens
        spend.output_tokens += completion.output_tokens
        spend.cost += (
            completion.input_tokens * ep.price_input_per_1m + completion.output_tokens * ep.price_output_per_1m
        ) / 1e6
        return completion, key

    async def _ask(self, request: Request, spend: Spend, text: str = "") -> tuple[Answer, str | None]:
        """The first choice's answer, re-asking once if it is not a label. Caches only parsed answers.
        `text`: the item's text (a span answer is aligned to it)."""
        completion, key = await self._complete(request, spend)
        answer = self.builder.parse(completion.choices[0], text)
        if answer.label is not None:
            self.cache.put(key, completion)
            return answer, key
        reask = replace(
            request,
            messages=(*request.messages, Message("assistant", answer.raw), Message("user", self.builder.reask(answer))),
        )
        completion2, key2 = await self._complete(reask, spend)
        answer2 = self.builder.parse(completion2.choices[0], text)
        if answer2.label is not None:
            self.cache.put(key2, completion2)
            return answer2, key2
        reason = f"unparseable after one re-ask: {answer2.error}"
        return replace(answer2, error=reason), None

    async def _samples(self, text: str, spend: Spend) -> list[str | None]:
        cfg = self.task.confidence
        prof = self.builder.profile
        if prof.supports_n:
            req = self.builder.build(text, temperature=cfg.sample_temperature, n=cfg.samples, seed=None)
            completion, key = await self._complete(req, spend)
            votes = [self.builder.parse(c, text).label for c in completion.choices]
            if any(v is not None for v in votes):
                self.cache.put(key, completion)
            return votes
        reqs = [self.builder.build(text, temperature=cfg.sample_temperature, seed=i + 1) for i in range(cfg.samples)]
        answers = await asyncio.gather(*(self._ask_quiet(r, spend, text) for r in reqs))
        return list(answers)

    async def _ask_quiet(self, request: Request, spend: Spend, text: str = "") -> str | None:
        completion, key = await self._complete(request, spend)
        label = self.builder.parse(completion.choices[0], text).label
        if label is not None:
            self.cache.put(key, completion)
        return label

    async def label(self, item: Item, *, prior: Spend | None = None) -> ItemResult:
        """One item alone. `prior`: what was spent on it already (its share of a multi-item request)."""
        ep = self.member.endpoint
        text, truncated = tokens.truncate(item.text, self.task.max_input_tokens, ep.model)
        spend = prior or Spend()
        base = ItemResult(item_id=item.id, member=self.member.name, status="failed", model=ep.model)
        try:
            try:
                request = self.builder.build(text)
            except TemplateError as exc:  # a branch of the template only this item's text reaches
                raise TemplateError(f"item {item.id!r} (row {item.row}): {exc}") from None
            answer, key = await self._ask(request, spend, text)
            dists = await self._dists(answer, text, spend) if answer.label is not None else {}
        except (FatalError, RetryableError) as exc:
            return self._done(self._failed(exc, base), spend)
        self.consecutive_fatal, self.last_fatal = 0, None
        if answer.label is None:
            return self._done(replace(base, reason=answer.error, raw=answer.raw, dropped=answer.dropped), spend)
        methods = self.task.confidence.methods
        return self._done(labeled(base, answer, dists, key, truncated, methods, elementwise=self.elementwise), spend)

    async def _dists(self, answer: Answer, text: str, spend: Spend) -> dict[str, Mapping[str, float]]:
        """The confidence distributions of a labeled answer (drawing self-consistency samples if asked)."""
        assert answer.label is not None
        if self.elementwise:  # per element: the share of the samples that produced it
            if "consistency" not in self.task.confidence.methods:
                return {}
            kind = self.builder.kind
            samples = [None if s is None else kind.decode(s) for s in await self._samples(text, spend)]
            shares = answer_elements(kind.decode(answer.label), samples, kind)
            return {} if shares is None else {"consistency": shares}
        dists = answer_dists(answer, self.task.confidence.methods, self.labels)
        if "consistency" in self.task.confidence.methods:
            votes = vote_dist(await self._samples(text, spend), self.labels)
            if votes is not None:
                dists["consistency"] = votes
        return dists

    def _failed(self, exc: FatalError | RetryableError, base: ItemResult) -> ItemResult:
        """The failed result of an error that retrying did not fix; raises what must stop the run."""
        ep = self.member.endpoint
        if isinstance(exc, RetryableError):
            self.consecutive_fatal, self.last_fatal = 0, None
            return replace(base, reason=f"gave up after {self.task.retry.max_attempts} attempts: {exc}")
        if exc.status == 401:
            raise FatalError(
                f"{ep.base_url} rejected the API key (401); set the environment variable {ep.api_key_env} "
                "to a valid key (or model.api_key_env to the variable that holds it)",
                status=401,
                request_id=exc.request_id,
            ) from exc
        if exc.status in ABORT_STATUSES:
            raise exc
        same = self.last_fatal is not None and self.last_fatal.status == exc.status
        self.consecutive_fatal = self.consecutive_fatal + 1 if same else 1
        self.last_fatal = exc
        return replace(base, reason=str(exc))

    def _base(self, item_id: str) -> ItemResult:
        return ItemResult(item_id=item_id, member=self.member.name, status="failed", model=self.member.endpoint.model)

    async def label_group(self, items: Sequence[Item]) -> list[ItemResult]:
        """Up to K items in one request (labeler.label.multi); each answered item is stored and cached on its
        own, with its share of the tokens; an item the answer misses or garbles is asked again alone."""
        multi = self.multi
        assert multi is not None
        out: dict[int, ItemResult] = {}
        todo: list[tuple[int, Item, str, bool, str]] = []  # (position, item, text, truncated, cache key)
        cut = [tokens.truncate(item.text, self.task.max_input_tokens, self.member.endpoint.model) for item in items]
        keys = [multi.identity(text) for text, _ in cut]
        hits, want = self.cache.get_many(keys), "logprob" in self.task.confidence.methods
        for n, (item, (text, truncated), key) in enumerate(zip(items, cut, keys, strict=True)):
            hit = hits.get(key)
            answer = None if hit is None else self._read_cached(hit, text, want)
            if answer is None or answer.label is None:
                todo.append((n, item, text, truncated, key))
            else:
                out[n] = await self._accepted(item, answer, text, truncated, key, Spend())
        if not todo:
            return [out[n] for n in range(len(items))]
        spend = Spend()
        try:
            request = multi.build([text for _, _, text, _, _ in todo])
            completion, _ = await self._complete(request, spend, use_cache=False)
        except TemplateError:  # a branch only one item's text reaches: asked alone, the error names the item
            for n, item, *_ in todo:
                out[n] = await self.label(item)
            return [out[n] for n in range(len(items))]
        except (FatalError, RetryableError) as exc:
            for (n, item, *_), share in zip(todo, spend_shares(spend, len(todo)), strict=True):
                out[n] = self._done(self._failed(exc, self._base(item.id)), share)
            return [out[n] for n in range(len(items))]
        accepted = self.accept_group([key for *_, key in todo], completion, spend, [t for _, _, t, _, _ in todo])
        for (n, item, text, truncated, key), (answer, share) in zip(todo, accepted, strict=True):
            if answer is None:
                out[n] = await self.label(item, prior=share)
            else:
                out[n] = await self._accepted(item, answer, text, truncated, key, share)
        return [out[n] for n in range(len(items))]

    async def _accepted(
        self, item: Item, answer: Answer, text: str, truncated: bool, key: str, spend: Spend
    ) -> ItemResult:
        """The result of an item a multi-item answer (or its cache entry) labeled."""
        try:
            dists = await self._dists(answer, text, spend)
        except (FatalError, RetryableError) as exc:
            return self._done(self._failed(exc, self._base(item.id)), spend)
        self.consecutive_fatal, self.last_fatal = 0, None
        methods, kind = self.task.confidence.methods, self.elementwise
        return self._done(labeled(self._base(item.id), answer, dists, key, truncated, methods, elementwise=kind), spend)

    def _read_cached(self, hit: Completion, text: str, want_probs: bool) -> Answer:
        """An item's answer from its multi-item cache entry; a task type's annotation is parsed against `text`."""
        if self.elementwise:
            return self.builder.parse(hit.choices[0], text)
        return read_cached(hit, self.labels, want_probs=want_probs)

    def accept_group(
        self, keys: Sequence[str], completion: Completion, spend: Spend, texts: Sequence[str]
    ) -> list[tuple[Answer | None, Spend]]:
        """Per item of a multi-item completion (in request order, `keys` their cache keys, `texts` the texts
        asked): its answer, or None when it must be asked again alone, and its share of `spend`. Answered
        items are cached."""
        assert self.multi is not None
        n = len(keys)
        found = self.multi.parse(completion.choices[0], n, texts)
        ins, outs = shares(completion.input_tokens, n), shares(completion.output_tokens, n)
        out: list[tuple[Answer | None, Spend]] = []
        for j, (key, share, f) in enumerate(zip(keys, spend_shares(spend, n), found, strict=True)):
            if f is None or f.answer.label is None:
                out.append((None, share))
                continue
            entry = item_completion(
                f, input_tokens=ins[j], output_tokens=outs[j], model=completion.model, rid=completion.request_id
            )
            self.cache.put(key, entry)
            out.append((f.answer, share))
        return out

    def _done(self, result: ItemResult, spend: Spend) -> ItemResult:
        return replace(
            result,
            input_tokens=spend.input_tokens,
            output_tokens=spend.output_tokens,
            cost=spend.cost,
            attempts=spend.attempts,
            cached=spend.cached and spend.attempts == 0 and result.status == "labeled",
        )


def _take(it: Iterator[Item], limit: int | None) -> Iterator[Item]:
    return it if limit is None else itertools.islice(it, limit)


async def label_pending(
    task: TaskConfig,
    store: RunStore,
    cache: Cache,
    backends: Mapping[str, Backend],
    *,
    limit: int | None = None,
    retry_failed: bool = False,
    progress: Progress | None = None,
    breaker: int = 25,
    stop: asyncio.Event | None = None,
    single: bool = False,
    warn: Callable[[str], None] | None = warn_on_stderr,
) -> None:
    """Label every pending (item, member) pair. Raises BackendError if a member's server keeps failing
    (`breaker` items in a row) or rejects us outright; what was stored so far stays stored. Once `stop`
    is set, workers finish the items they hold (their answers are paid for: keep them) and take no more.
    `single`: one item a request even if the member asks K (the items a Batch API run left over).
    `warn` gets one line for a concurrency above the sane maximum (labeler.label.slots)."""
    workers: list[MemberWorker] = []
    ticker = None  # redraws the progress line while no item finishes (a rate limit being waited out)
    if progress is not None:
        progress.gauge = lambda: gauge(workers)
        ticker = asyncio.get_running_loop().create_task(progress.tick_forever())

    async def run_member(member: Member) -> None:
        worker = MemberWorker(task, member, backends[member.name], cache)
        workers.append(worker)
        k = 1 if single or worker.multi is None else worker.multi.k
        it = _take(store.pending(member.name, retry_failed=retry_failed), limit)
        flagged: set[str] = set()

        async def loop() -> None:
            me = asyncio.current_task()
            for first in it:  # workers share one iterator; next() never awaits, so no item is taken twice
                if stop is not None and stop.is_set():
                    return
                if me is not None and me.cancelling():  # cancelled, and a library below ate the cancel
                    raise asyncio.CancelledError
                if k == 1:
                    one(first, await worker.label(first))
                    continue
                group = [first, *itertools.islice(it, k - 1)]
                for item, result in zip(group, await worker.label_group(group), strict=True):
                    one(item, result)

        def one(item: Item, result: ItemResult) -> None:
            store.put_result(result)
            if result.reason and "truncated" in result.reason and item.id not in flagged:
                flagged.add(item.id)
                store.set_flags(item.id, (*item.flags, "truncated"))
            if progress is not None:
                progress.update(status=result.status, cost=result.cost, cached=result.cached)
            if worker.consecutive_fatal >= breaker and worker.last_fatal is not None:
                raise _rejected_everything(task, member, worker.consecutive_fatal, worker.last_fatal, store)
            if result.status == "failed" and result.reason and result.reason.startswith("gave up"):
                worker.consecutive_failures += 1
                if worker.consecutive_failures >= breaker:
                    raise BackendError(
                        f"{member.endpoint.base_url} failed {breaker} items in a row ({result.reason}); "
                        f"check the server, then `labeler resume {store.run_dir}`"
                    )
            else:
                worker.consecutive_failures = 0

        pending = store.count_pending(member.name, retry_failed=retry_failed)
        pending = pending if limit is None else min(pending, limit)
        n = worker_count(worker.limiter.max_slots, pending, k=k, name=member.name, warn=warn)
        async with asyncio.TaskGroup() as tg:
            for _ in range(n):  # at most one worker per pending request: a huge concurrency costs nothing
                tg.create_task(loop())

    try:
        async with asyncio.TaskGroup() as tg:
            for m in task.members:
                tg.create_task(run_member(m))
    except BaseExceptionGroup as group:
        err = first_error(group)
        if isinstance(err, RateLimitedTooLong):  # its items were not stored: they stay pending
            raise RateLimitedTooLong(f"{err}, then `labeler resume {store.run_dir}`", status=err.status) from None
        raise err from None
    finally:  # results are group-committed: whatever happened, commit what was answered
        if ticker is not None:
            ticker.cancel()
        store.flush()
        cache.flush()


def _rejected_everything(task: TaskConfig, member: Member, n: int, last: FatalError, store: RunStore) -> FatalError:
    """The one-line error for a server that answers every request with the same 4xx."""
    ep = member.endpoint
    fix = "fix what the server's message names"
    if last.status in (400, 422) and profile_for(ep).structured != "none":
        where = "model.profile" if member.name == "default" else f"profile of member {member.name!r}"
        fix = f'if it does not support structured output, set {where} = "plain" in {task.path.name}'
    return FatalError(
        f"{ep.base_url} rejected {n} items in a row ({str(last).split('; ', 1)[0]}); {fix}, "
        f"then `labeler resume {store.run_dir}`",
        status=last.status,
        request_id=last.request_id,
    )
