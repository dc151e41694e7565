"""What labeling one item comes to: the spend of its requests and the ItemResult built from its answer.

    Spend          tokens, cost and attempts of an item's requests (summed over re-asks and samples)
    spend_shares   a multi-item request's spend split over its items
    answer_dists   the confidence distributions an answer carries itself (logprob, verbalized)
    labeled        the labeled ItemResult of an answer and its distributions
    RunSummary     what `labeler run` prints at the end

For a task type whose annotations are scored element by element (multi_label, spans: `TaskType.elementwise`)
the distributions hold, per method, each element's confidence (labeler.confidence.elements) and the item's
confidence is the lowest of them; single-label results are built exactly as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from labeler.confidence.distributions import pick_confidence, verbalized_dist
from labeler.confidence.elements import item_confidence
from labeler.label.multi import shares
from labeler.types import Answer, ItemResult


@dataclass
class Spend:
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    attempts: int = 0
    cached: bool = True  # stays True only if every completion came from the cache


def spend_shares(spend: Spend, n: int) -> list[Spend]:
    """`spend` split over the n items of one request: tokens in integer shares that sum to it."""
    ins, outs = shares(spend.input_tokens, n), shares(spend.output_tokens, n)
    return [Spend(ins[j], outs[j], spend.cost / n, spend.attempts, cached=False) for j in range(n)]


def answer_dists(answer: Answer, methods: Sequence[str], labels: Sequence[str]) -> dict[str, Mapping[str, float]]:
    """The distributions a labeled answer carries itself: logprob and verbalized."""
    assert answer.label is not None
    dists: dict[str, Mapping[str, float]] = {}
    if "logprob" in methods and answer.label_probs is not None:
        dists["logprob"] = dict(answer.label_probs)
    if "verbalized" in methods and answer.verbalized is not None:
        dists["verbalized"] = verbalized_dist(answer.label, answer.verbalized, labels)
    return dists


def labeled(
    base: ItemResult,
    answer: Answer,
    dists: Mapping[str, Mapping[str, float]],
    key: str | None,
    truncated: bool,
    methods: Sequence[str],
    *,
    elementwise: bool = False,
) -> ItemResult:
    """`elementwise`: `dists` hold per-element confidences and the item's confidence is the lowest."""
    assert answer.label is not None
    return replace(
        base,
        status="labeled",
        label=answer.label,
        confidence=item_confidence(dists, methods) if elementwise else pick_confidence(answer.label, dists, methods),
        distributions=dists,
        raw=answer.raw,
        cache_key=key,
        reason="input truncated to the token budget" if truncated else None,
        dropped=answer.dropped,
    )


@dataclass(frozen=True)
class RunSummary:
    counts: Mapping[str, int]
    input_tokens: int
    output_tokens: int
    cost: float
    cached: int
    seconds: float
    dropped: int = 0  # quoted spans not found in the item texts, left out (task type spans)
