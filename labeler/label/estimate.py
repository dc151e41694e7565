"""Before a run: render every prompt, count its tokens with tiktoken, and say what the run will cost
in tokens, dollars and (at the configured rate limits) wall time. Nothing is sent."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from labeler.config import TaskConfig
from labeler.inputs import read_rows
from labeler.label import tokens
from labeler.label.prompts import RequestBuilder


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


def estimate(task: TaskConfig, input_path: Path | None = None, *, max_rendered: int = 50_000) -> Estimate:
    """Counts every prompt for corpora up to `max_rendered` items; beyond that, the first
    `max_rendered` are counted and scaled to the whole (and `sampled` says so)."""
    path = input_path or task.input_path
    if path is None:
        from labeler.errors import InputError

        raise InputError("no input: set input.path in the config or pass --input FILE")
    builders = [RequestBuilder.for_member(task, m) for m in task.members]
    in_tok = [0] * len(builders)
    items = skipped = truncated = rendered = 0
    for row in read_rows(path, id_column=task.id_column, text_column=task.text_column):
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
            msgs = b.messages(text)
            in_tok[i] += sum(tokens.count(m.content, model) + 4 for m in msgs) + 3  # chat framing
    scale = (items - skipped) / rendered if rendered else 0.0
    out = []
    cfg = task.confidence
    for i, b in enumerate(builders):
        ep = b.member.endpoint
        labeled = items - skipped
        per_item_requests = 1
        if "consistency" in cfg.methods:
            per_item_requests += 1 if b.profile.supports_n else cfg.samples
        requests = labeled * per_item_requests
        inp = int(in_tok[i] * scale) * per_item_requests
        outp = labeled * ep.max_output_tokens * (1 + (cfg.samples if "consistency" in cfg.methods else 0))
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
        lines.append(
            f"{m.member} ({m.model}, {m.encoding}): {m.requests} requests, {m.input_tokens:,} input tokens, "
            f"≤{m.output_tokens:,} output tokens, ≤${m.dollars:.4f}, {when}"
        )
    lines.append(f"total: ≤${e.dollars:.4f}")
    return "\n".join(lines)
