"""One record per labeled item: the item as the LLM answered it, built once, read by every later stage.

The router, the review tools, calibration, evaluation and the export all take an `ItemRecord`; none of
them decides again which label or confidence stands for the LLM. The rules, in one place:

    label        with several members, or when the run applies a bias correction (labeler.confidence.correct),
                 the combined label; else the member's own label;
                 None when no member gave a usable label (the item failed) or the item was skipped
    status       "labeled" when `label` is set, "skipped" when the text was empty, else "failed"
    confidence   the confidence of `label` used for routing, first of: calibrated > ensemble (or corrected) > member
    confidence_source   which of those it is ("calibrated", "ensemble", "corrected", "member"; None without one)
    primary      the first member's answer: what the per-method confidences (`method_confidences`) refer to;
                 for a multi-label or span task (`elementwise`) a method's confidence is the lowest of the answer's
                 element confidences under it (the item's confidence, labeler.confidence.elements)

Spend (tokens, cost) is the sum over the members' answers, each already summed over its attempts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from labeler.config import CONFIDENCE_METHODS
from labeler.errors import LabelerError
from labeler.store.rows import CombinedRow, ItemRows, ResultRow
from labeler.store.run import RunStore


@dataclass(frozen=True)
class ItemRecord:
    id: str
    ord: int
    text: str
    flags: tuple[str, ...]
    gold: str | None
    status: str
    label: str | None
    confidence: float | None
    confidence_source: str | None
    primary: ResultRow
    members: Mapping[str, ResultRow]  # every member's answer, in the task's member order
    combined: CombinedRow | None
    template_hashes: Mapping[str, str] = field(default_factory=dict)
    elementwise: bool = False  # a multi-label or span task: distributions hold element confidences

    @property
    def member_labels(self) -> dict[str, str | None]:
        return {name: r.label if r.status == "labeled" else None for name, r in self.members.items()}

    @property
    def ensemble_label(self) -> str | None:
        return None if self.combined is None else self.combined.label

    @property
    def ensemble_confidence(self) -> float | None:
        return None if self.combined is None else self.combined.confidence

    @property
    def calibrated_confidence(self) -> float | None:
        return None if self.combined is None else self.combined.calibrated

    @property
    def vote_share(self) -> float | None:
        return None if self.combined is None or len(self.members) < 2 else self.combined.vote_share

    @property
    def divergence(self) -> float | None:
        return None if self.combined is None or len(self.members) < 2 else self.combined.divergence

    @property
    def primary_label(self) -> str | None:
        """The first member's own label (what its per-method confidences refer to)."""
        return self.primary.label if self.primary.status == "labeled" else None

    def method_confidences(self) -> dict[str, float | None]:
        """method -> the first member's probability for its own label under that method."""
        own = self.primary_label
        if self.elementwise:  # element -> confidence: the item's is the lowest (labeler.confidence.elements)
            return {
                m: min(map(float, d.values())) if own is not None and (d := self.primary.distributions.get(m)) else None
                for m in CONFIDENCE_METHODS
            }
        return {
            m: None if own is None or m not in self.primary.distributions else self.primary.distributions[m].get(own)
            for m in CONFIDENCE_METHODS
        }

    def distributions(self) -> dict[str, Mapping[str, float]]:
        """method -> distribution over the labels: the first member's methods, and "ensemble" when combined."""
        out = dict(self.primary.distributions)
        if self.combined is not None and self.combined.distribution:
            out["ensemble"] = self.combined.distribution
        return out

    @property
    def input_tokens(self) -> int:
        return sum(r.input_tokens for r in self.members.values())

    @property
    def output_tokens(self) -> int:
        return sum(r.output_tokens for r in self.members.values())

    @property
    def cost(self) -> float:
        return sum(r.cost for r in self.members.values())

    @property
    def cached(self) -> bool:
        return all(r.cached for r in self.members.values())


def build_record(
    rows: ItemRows, *, member_order: Sequence[str], template_hashes: Mapping[str, str], elementwise: bool = False
) -> ItemRecord:
    """The ItemRecord of one item from what the store holds on it (see the module docstring for the rules)."""
    members = {m: rows.results[m] for m in member_order if m in rows.results}
    members.update({m: r for m, r in rows.results.items() if m not in members})
    primary = next(iter(members.values()))
    combined = rows.combined
    several = len(member_order) > 1
    corrected = combined is not None and combined.raw_label is not None  # the run's bias correction applied
    if (several or corrected) and combined is not None:
        label = combined.label
    else:
        label = primary.label if primary.status == "labeled" else None
    if label is not None:
        status = "labeled"
    elif all(r.status == "skipped" for r in members.values()):
        status = "skipped"
    else:
        status = "failed"
    confidence, source = None, None
    if label is not None:
        if combined is not None and combined.calibrated is not None:
            confidence, source = combined.calibrated, "calibrated"
        elif (several or corrected) and combined is not None and combined.confidence is not None:
            confidence, source = combined.confidence, "ensemble" if several else "corrected"
        elif primary.confidence is not None and primary.label == label:
            confidence, source = primary.confidence, "member"
    return ItemRecord(
        id=rows.id,
        ord=rows.ord,
        text=rows.text,
        flags=rows.flags,
        gold=rows.gold,
        status=status,
        label=label,
        confidence=confidence,
        confidence_source=source,
        primary=primary,
        members=members,
        combined=combined,
        template_hashes=template_hashes,
        elementwise=elementwise,
    )


def records(store: RunStore) -> Iterator[ItemRecord]:
    """Every answered item of a run, in input order, as ItemRecords (streamed)."""
    manifest = store.manifest
    order = [m["name"] for m in manifest["members"]]
    hashes = {m["name"]: m["template_hash"] for m in manifest["members"]}
    try:
        elementwise = store.task().kind.elementwise
    except LabelerError:  # a store without a config snapshot (some tests): single-label, as before
        elementwise = False
    for rows in store.item_rows():
        yield build_record(rows, member_order=order, template_hashes=hashes, elementwise=elementwise)
