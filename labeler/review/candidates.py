"""What routing knows of one item, and why it is routed: the reasons and the doubt (priority) of a candidate.

    failed          no usable label from the model: a human must label it
    low_confidence  confidence < threshold
    disagreement    ensemble vote share < min_vote_share or divergence > max_divergence (when present)
    dropped_spans   (spans) the answer quoted spans the aligner could not place — not in the text, or only
                    inside another span where the task forbids overlap — so what it kept may be wrong too

For a task type scored element by element (multi_label, spans) a candidate carries its element confidences
(labeler.confidence.elements) and the reasons name the doubtful elements, least confident first:

    low_confidence: label sport 0.40, label tech 0.55
    low_confidence: span 12-17 PER 'Alice' 0.33
    disagreement: members differ on label sport
    dropped_spans: 2 quoted spans not placed

The code before the colon is the reason (`reason_code`); single-label reasons are the bare codes, as ever.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from labeler.confidence.elements import disputed
from labeler.config import RoutingConfig
from labeler.record import ItemRecord
from labeler.tasktypes import TaskType, doubtful

# canonical order in an item (the router's queue, the review tools' reason terms)
REASONS = ("failed", "low_confidence", "disagreement", "dropped_spans", "active_learning", "audit")

@dataclass(frozen=True)
class Candidate:
    """What routing knows of one item. `label` None means the item failed. `elements`: per-element confidences
    (multi_label, spans); `disputed`: the elements some members produced and others not; `group`: the audit
    stratum when it is not the label itself."""

    item_id: str
    label: str | None
    confidence: float | None = None
    vote_share: float | None = None
    divergence: float | None = None
    member_labels: Mapping[str, str | None] = field(default_factory=dict)
    elements: Mapping[str, float] | None = None
    disputed: tuple[str, ...] = ()
    group: str | None = None
    dropped: int = 0  # quoted spans the members' answers held that were not placed (labeler.tasktypes.spans)

    @property
    def stratum(self) -> str:
        """The audit stratum: the predicted label (single), or how many elements the annotation has."""
        return self.group if self.group is not None else str(self.label)


@dataclass(frozen=True)
class Rules:
    threshold: float = RoutingConfig.low_confidence
    min_vote_share: float = RoutingConfig.min_vote_share
    max_divergence: float = RoutingConfig.max_divergence


def reason_code(reason: str) -> str:
    """The reason without what it names: "low_confidence: label sport 0.40" -> "low_confidence"."""
    return reason.split(":", 1)[0]


def reasons_for(c: Candidate, rules: Rules) -> tuple[str, ...]:
    """The non-audit reasons that apply to `c`, in canonical order."""
    if c.label is None:
        return ("failed",)
    out = []
    if c.elements is not None:
        low = doubtful(c.elements, rules.threshold)
        if low:
            out.append("low_confidence: " + ", ".join(f"{e} {c.elements[e]:.2f}" for e in low))
    elif c.confidence is not None and c.confidence < rules.threshold:
        out.append("low_confidence")
    if (c.vote_share is not None and c.vote_share < rules.min_vote_share) or (
        c.divergence is not None and c.divergence > rules.max_divergence
    ):
        out.append("disagreement: members differ on " + ", ".join(c.disputed) if c.disputed else "disagreement")
    if c.dropped:
        out.append(f"dropped_spans: {c.dropped} quoted span{'s' if c.dropped > 1 else ''} not placed")
    return tuple(out)


def priority(c: Candidate) -> float:
    """Doubt in [0, 2]: 2 for a failed item, else max(1 - confidence, 1 - vote_share, divergence)."""
    if c.label is None:
        return 2.0
    parts = [0.0]
    if c.confidence is not None:
        parts.append(1.0 - c.confidence)
    if c.vote_share is not None:
        parts.append(1.0 - c.vote_share)
    if c.divergence is not None:
        parts.append(c.divergence)
    return max(parts)


def _group(n: int) -> str:
    return "1 element" if n == 1 else f"{n} elements" if n < 3 else "3+ elements"


def candidate_from_record(rec: ItemRecord, kind: TaskType | None = None) -> Candidate | None:
    """What routing needs of one ItemRecord (labeler.record decides the LLM's label and confidence);
    None for a skipped item, label None for a failed one. `kind`: the task type, when it is scored element
    by element (its element confidences are the combined row's distribution)."""
    if rec.status == "skipped":
        return None
    label = rec.label if rec.status == "labeled" else None
    base = Candidate(
        item_id=rec.id,
        label=label,
        confidence=rec.confidence,
        vote_share=rec.vote_share,
        divergence=rec.divergence,
        member_labels=rec.member_labels,
    )
    if kind is None or not kind.elementwise:
        return base
    elements = dict(rec.combined.distribution) if rec.combined is not None and rec.combined.distribution else None
    value = None if label is None else kind.decode(label)
    votes: Sequence[object] = [kind.decode(v) for v in rec.member_labels.values() if v is not None]
    return Candidate(
        item_id=base.item_id,
        label=label,
        confidence=base.confidence,
        vote_share=base.vote_share,
        divergence=base.divergence,
        member_labels=base.member_labels,
        elements=elements,
        disputed=tuple(disputed(votes, kind)),
        group=None if value is None else _group(len(kind.elements(value))),
        dropped=sum(r.dropped for r in rec.members.values() if r.status == "labeled"),
    )
