"""Labeling: every pending item of every member, concurrently, each result stored as it arrives.

For one item and one member: truncate the text to the token budget, build the request, take the
answer from the cache or from the backend (through the limiter and the retry layer), parse it,
re-ask once if it is not a label, draw self-consistency samples if asked, and write one ItemResult
(labeled, or failed with the raw output and the reason). Nothing is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace

from labeler.confidence.distributions import pick_confidence, verbalized_dist, vote_dist
from labeler.config import Member, TaskConfig
from labeler.errors import BackendError, FatalError, LabelerError, RetryableError, TemplateError
from labeler.label import tokens
from labeler.label.backends import Backend
from labeler.label.parse import parse_choice
from labeler.label.profiles import profile_for
from labeler.label.progress import Progress
from labeler.label.prompts import RequestBuilder, answer_format
from labeler.label.retry import Limiter, call_with_retry
from labeler.store import Cache, RunStore
from labeler.types import Answer, Completion, Item, ItemResult, Message, Request

log = logging.getLogger(__name__)

ABORT_STATUSES = {401, 403, 404}  # every further request would fail the same way


@dataclass
class Spend:
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    attempts: int = 0
    cached: bool = True  # stays True only if every completion came from the cache


@dataclass
class MemberWorker:
    task: TaskConfig
    member: Member
    backend: Backend
    cache: Cache
    builder: RequestBuilder = field(init=False)
    limiter: Limiter = field(init=False)
    consecutive_failures: int = 0
    # items in a row that the server rejected outright with the same status (400, 422, ...), and it
    consecutive_fatal: int = 0
    last_fatal: FatalError | None = None

    def __post_init__(self) -> None:
        ep = self.member.endpoint
        self.builder = RequestBuilder.for_member(self.task, self.member)
        self.limiter = Limiter(ep.concurrency, ep.requests_per_minute, ep.tokens_per_minute)
        self.json_answer = answer_format(self.task, self.builder.profile) == "json"
        self.labels = self.task.label_names

    async def _complete(self, request: Request, spend: Spend) -> tuple[Completion, str]:
        key = request.cache_key()
        hit = self.cache.get(key)
        if hit is not None:
            return hit, key
        ep = self.member.endpoint
        est = 0  # counting the prompt's tokens costs as much as the rest of the request: only for a limit
        if ep.tokens_per_minute > 0:
            est = tokens.count("".join(m.content for m in request.messages), request.model) + request.max_tokens

        async def once() -> Completion:
            async with self.limiter.slot(est):
                return await self.backend.complete(request)

        def on_retry(exc: RetryableError, attempt: int) -> None:
            log.debug("retrying (%d) after: %s", attempt, exc)

        completion, attempts = await call_with_retry(once, self.task.retry, on_retry=on_retry)
        spend.cached = False
        spend.attempts += attempts
        spend.input_tokens += completion.input_tokens
        spend.output_tokens += completion.output_tokens
        spend.cost += (
            completion.input_tokens * ep.price_input_per_1m + completion.output_tokens * ep.price_output_per_1m
        ) / 1e6
        return completion, key

    async def _ask(self, request: Request, spend: Spend) -> tuple[Answer, str | None]:
        """The first choice's answer, re-asking once if it is not a label. Caches only parsed answers."""
        completion, key = await self._complete(request, spend)
        answer = parse_choice(completion.choices[0], self.labels, json_answer=self.json_answer)
        if answer.label is not None:
            self.cache.put(key, completion)
            return answer, key
        reask = replace(
            request,
            messages=(
                *request.messages,
                Message("assistant", answer.raw),
                Message("user", f"That is not a valid answer. Answer with exactly one of: {', '.join(self.labels)}."),
            ),
        )
        completion2, key2 = await self._complete(reask, spend)
        answer2 = parse_choice(completion2.choices[0], self.labels, json_answer=self.json_answer)
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
            votes = [parse_choice(c, self.labels, json_answer=self.json_answer).label for c in completion.choices]
            if any(v is not None for v in votes):
                self.cache.put(key, completion)
            return votes
        reqs = [self.builder.build(text, temperature=cfg.sample_temperature, seed=i + 1) for i in range(cfg.samples)]
        answers = await asyncio.gather(*(self._ask_quiet(r, spend) for r in reqs))
        return list(answers)

    async def _ask_quiet(self, request: Request, spend: Spend) -> str | None:
        completion, key = await self._complete(request, spend)
        label = parse_choice(completion.choices[0], self.labels, json_answer=self.json_answer).label
        if label is not None:
            self.cache.put(key, completion)
        return label

    async def label(self, item: Item) -> ItemResult:
        ep = self.member.endpoint
        text, truncated = tokens.truncate(item.text, self.task.max_input_tokens, ep.model)
        spend = Spend()
        base = ItemResult(item_id=item.id, member=self.member.name, status="failed", model=ep.model)
        try:
            try:
                request = self.builder.build(text)
            except TemplateError as exc:  # a branch of the template only this item's text reaches
                raise TemplateError(f"item {item.id!r} (row {item.row}): {exc}") from None
            answer, key = await self._ask(request, spend)
            dists: dict[str, Mapping[str, float]] = {}
            methods = self.task.confidence.methods
            if answer.label is not None:
                if "logprob" in methods and answer.label_probs is not None:
                    dists["logprob"] = dict(answer.label_probs)
                if "verbalized" in methods and answer.verbalized is not None:
                    dists["verbalized"] = verbalized_dist(answer.label, answer.verbalized, self.labels)
                if "consistency" in methods:
                    shares = vote_dist(await self._samples(text, spend), self.labels)
                    if shares is not None:
                        dists["consistency"] = shares
        except FatalError as exc:
            if exc.status == 401:
                raise FatalError(
                    f"{ep.base_url} rejected the API key (401); set the environment variable {ep.api_key_env} "
                    "to a valid key (or model.api_key_env to the variable that holds it)",
                    status=401,
                    request_id=exc.request_id,
                ) from exc
            if exc.status in ABORT_STATUSES:
                raise
            same = self.last_fatal is not None and self.last_fatal.status == exc.status
            self.consecutive_fatal = self.consecutive_fatal + 1 if same else 1
            self.last_fatal = exc
            return self._done(replace(base, reason=str(exc)), spend)
        except RetryableError as exc:
            self.consecutive_fatal, self.last_fatal = 0, None
            return self._done(
                replace(base, reason=f"gave up after {self.task.retry.max_attempts} attempts: {exc}"), spend
            )
        self.consecutive_fatal, self.last_fatal = 0, None
        if answer.label is None:
            return self._done(replace(base, reason=answer.error, raw=answer.raw), spend)
        result = replace(
            base,
            status="labeled",
            label=answer.label,
            confidence=pick_confidence(answer.label, dists, self.task.confidence.methods),
            distributions=dists,
            raw=answer.raw,
            cache_key=key,
            reason="input truncated to the token budget" if truncated else None,
        )
        return self._done(result, spend)

    def _done(self, result: ItemResult, spend: Spend) -> ItemResult:
        return replace(
            result,
            input_tokens=spend.input_tokens,
            output_tokens=spend.output_tokens,
            cost=spend.cost,
            attempts=spend.attempts,
            cached=spend.cached and spend.attempts == 0 and result.status == "labeled",
        )


@dataclass(frozen=True)
class RunSummary:
    counts: Mapping[str, int]
    input_tokens: int
    output_tokens: int
    cost: float
    cached: int
    seconds: float


def _take(it: Iterator[Item], limit: int | None) -> Iterator[Item]:
    for n, item in enumerate(it):
        if limit is not None and n >= limit:
            return
        yield item


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
) -> None:
    """Label every pending (item, member) pair. Raises BackendError if a member's server keeps failing
    (`breaker` items in a row) or rejects us outright; what was stored so far stays stored. Once `stop`
    is set, workers finish the item they hold (its answer is paid for: keep it) and take no more."""

    async def run_member(member: Member) -> None:
        worker = MemberWorker(task, member, backends[member.name], cache)
        it = _take(store.pending(member.name, retry_failed=retry_failed), limit)
        flagged: set[str] = set()

        async def loop() -> None:
            me = asyncio.current_task()
            for item in it:  # workers share one iterator; next() never awaits, so no item is taken twice
                if stop is not None and stop.is_set():
                    return
                if me is not None and me.cancelling():  # cancelled, and a library below ate the cancel
                    raise asyncio.CancelledError
                result = await worker.label(item)
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

        async with asyncio.TaskGroup() as tg:
            for _ in range(member.endpoint.concurrency):
                tg.create_task(loop())

    try:
        async with asyncio.TaskGroup() as tg:
            for m in task.members:
                tg.create_task(run_member(m))
    except BaseExceptionGroup as group:
        raise _first_error(group) from None
    finally:  # results are group-committed: whatever happened, commit what was answered
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


def _first_error(group: BaseExceptionGroup) -> BaseException:
    """The error to show from a task group: a LabelerError if there is one, else the first."""
    flat: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(reversed(exc.exceptions))
        else:
            flat.append(exc)
    for exc in flat:
        if isinstance(exc, LabelerError):
            return exc
    return flat[0]
