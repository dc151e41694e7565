"""Before a run: render every prompt, count its tokens with tiktoken, and say what the run will cost
in tokens, dollars and (at the configured rate limits) wall time. Nothing is sent.

With `items_per_request = K` the prompts counted are the K-item ones, as they will be sent (one request
per K items); the price through the OpenAI Batch API (half the list price) is shown next to the list price.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from labeler.config import TaskConfig
from labeler.inputs import read_rows, warn_on_stderr
from labeler.label import tokens
from labeler.label.multi_elements import multi_builder
from labeler.label.prompts import RequestBuilder
from labeler.types import Message

BATCH_PRICE = 0.5  # the Batch API's price as a fraction of the list price (labeler.label.batch_api)


@dataclass(frozen=True)
class MemberEstimate:
    member: str
    model: str
    items: int
    requests: int
    input_tokens: int
    output_tokens: int  # the max_output_tokens ceiling
    dollars: float
    minutes_at_limits: float | None  # None: no rate limit configured
    encoding: str
    items_per_request: int = 1

    @property
    def batch_dollars(self) -> float:
        return self.dollars * BATCH_PRICE


@dataclass(frozen=True)
class Estimate:
    items: int
    skipped: int
    truncated: int
    sampled: bool
    members: tuple[MemberEstimate, ...]

    @property
    def dollars(self) -> float:
        return sum(m.dollars for m in self.members)

    @property
    def batch_dollars(self) -> float:
        return sum(m.batch_dollars for m in self.members)


def estimate(task: TaskConfig, input_path: Path | None = None, *, max_rendered: int = 50_000) -> Estimate:
    """Counts every prompt for corpora up to `max_rendered` items; beyond that, the first
    `max_rendered` are counted and scaled to the whole (and `sampled` says so)."""
    path = input_path or task.input_path
    if path is None:
        from labeler.errors import InputError

        raise InputError("no input: set input.path in the config or pass --input FILE")
    builders = [RequestBuilder.for_member(task, m) for m in task.members]
    multis = [multi_builder(task, b.member, b) for b in builders]
    groups: list[list[str]] = [[] for _ in builders]  # texts waiting for a K-item prompt
    in_tok = [0] * len(builders)
    out_ceiling = [0] * len(builders)  # max_tokens of the K-item requests, summed

    def count(i: int, msgs: tuple[Message, ...], model: str) -> None:
        in_tok[i] += sum(tokens.count(m.content, model) + 4 for m in msgs) + 3  # chat framing

    def flush(i: int) -> None:
        multi = multis[i]
        if multi is not None and groups[i]:
            count(i, multi.messages(groups[i]), multi.single.member.endpoint.model)
            out_ceiling[i] += multi.build(groups[i]).max_tokens
            groups[i].clear()

    items = skipped = truncated = rendered = 0
    for row in read_rows(
        path, id_column=task.id_column, text_column=task.text_column, strict=False, warn=warn_on_stderr
    ):
        items += 1
        if row.skip:
            skipped += 1
            continue
        if rendered >= max_rendered:
            continue
        rendered += 1
        for i, b in enumerate(builders):
            model = b.member.endpoint.model
            text, cut = tokens.truncate(row.item.text, task.max_input_tokens, model)
            truncated += cut and i == 0
            multi = multis[i]
            if multi is None:
                count(i, b.messages(text), model)
                continue
            groups[i].append(text)
            if len(groups[i]) == multi.k:
                flush(i)
    for i in range(len(builders)):
        flush(i)
    scale = (items - skipped) / rendered if rendered else 0.0
    out = []
    cfg = task.confidence
    for i, b in enumerate(builders):
        ep = b.member.endpoint
        labeled = items - skipped
        k = ep.items_per_request if multis[i] is not None else 1
        per_item_requests = 1
        if "consistency" in cfg.methods:
            per_item_requests += 1 if b.profile.supports_n else cfg.samples
        requests = labeled * per_item_requests
        inp = int(in_tok[i] * scale) * per_item_requests
        outp = labeled * ep.max_output_tokens * (1 + (cfg.samples if "consistency" in cfg.methods else 0))
        if k > 1:  # one K-item request per K items (samples, if any, stay one item a request)
            samples = per_item_requests - 1
            requests = -(-labeled // k) + labeled * samples
            inp = int(in_tok[i] * scale) + int(in_tok[i] * scale / k) * samples  # samples: a rough share
            outp = int(out_ceiling[i] * scale) + labeled * ep.max_output_tokens * samples
        dollars = (inp * ep.price_input_per_1m + outp * ep.price_output_per_1m) / 1e6
        limits = []
        if ep.requests_per_minute > 0:
            limits.append(requests / ep.requests_per_minute)
        if ep.tokens_per_minute > 0:
            limits.append((inp + outp) / ep.tokens_per_minute)
        out.append(
            MemberEstimate(
                b.member.name,
                ep.model,
                labeled,
                requests,
                inp,
                outp,
                dollars,
                max(limits) if limits else None,
                tokens.get_encoder(ep.model).name,
                k,
            )
        )
    return Estimate(items, skipped, truncated, rendered < items - skipped, tuple(out))


def format_estimate(e: Estimate) -> str:
    lines = [
        f"items: {e.items} ({e.skipped} skipped as empty, {e.truncated} to be truncated)"
        + ("  [token counts scaled from a prefix of the corpus]" if e.sampled else "")
    ]
    for m in e.members:
        when = (
            "no rate limit set" if m.minutes_at_limits is None else f"{m.minutes_at_limits:.1f} min at the rate limits"
        )
        per = f" ({m.items_per_request} items a request)" if m.items_per_request > 1 else ""
        lines.append(
            f"{m.member} ({m.model}, {m.encoding}): {m.requests} requests{per}, {m.input_tokens:,} input tokens, "
            f"≤{m.output_tokens:,} output tokens, ≤${m.dollars:.4f} (Batch API ≤${m.batch_dollars:.4f}), {when}"
        )
    lines.append(f"through the OpenAI Batch API ([batch] enabled, half the list price): ≤${e.batch_dollars:.4f}")
    lines.append(f"total: ≤${e.dollars:.4f}")
    return "\n".join(lines)
