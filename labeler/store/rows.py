"""The rows the run store reads and writes, as frozen dataclasses: what every later stage gets from it.

ResultRow      one member's answer for one item (table results)
CombinedRow    the members' answers combined for one item (table combined)
StoredCalibrator  a fitted calibrator and its out-of-fold values (tables calibrators, calibrated_oof)
QueueEntry     one routed item (table queue), with its text when read back
Stratum        one stratum of the random audit (table audit_strata)
Review         one reviewer's answer for one item (table reviews)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ResultRow:
    item_id: str
    member: str
    status: str  # labeled, failed or skipped
    label: str | None
    confidence: float | None
    distributions: Mapping[str, Mapping[str, float]]
    reason: str | None
    raw: str | None
    model: str
    input_tokens: int
    output_tokens: int
    cost: float
    attempts: int
    cached: bool
    dropped: int = 0  # quoted spans not found in the text (task type spans)


@dataclass(frozen=True)
class CombinedRow:
    item_id: str
    label: str | None
    confidence: float | None
    distribution: Mapping[str, float]
    vote_share: float | None
    entropy: float | None
    divergence: float | None
    disagree: bool
    member_labels: Mapping[str, str | None]
    calibrated: float | None = None  # the calibrated confidence of `label`, when a calibrator is stored
    raw_label: str | None = None  # the label before the run's bias correction (None: no correction applied)


@dataclass(frozen=True)
class ItemRows:
    """One item of the corpus with everything the store holds on its labeling, as `RunStore.item_rows` reads it."""

    ord: int
    id: str
    text: str
    flags: tuple[str, ...]
    gold: str | None
    results: Mapping[str, ResultRow]  # member name -> its answer
    combined: CombinedRow | None


@dataclass(frozen=True)
class StoredCalibrator:
    method: str
    kind: str
    params: Mapping[str, Any]
    cv_log_loss: float
    n_fit: int
    fitted_at: float
    out_of_fold: Mapping[str, float] = field(default_factory=dict)  # item id -> value from a fold that left it out


@dataclass(frozen=True)
class Stratum:
    name: str
    population: int  # N_h: labeled items with this predicted label
    sampled: int  # n_h: audited items drawn from them

    @property
    def inclusion_prob(self) -> float:
        return self.sampled / self.population if self.population else 0.0


@dataclass(frozen=True)
class QueueEntry:
    """One queued item. rank 1 = most doubtful; `inclusion_prob` is n_h/N_h for audit items, else None."""

    item_id: str
    rank: int
    reasons: tuple[str, ...]
    priority: float
    audit: bool
    llm_label: str | None
    confidence: float | None
    inclusion_prob: float | None = None
    stratum: str | None = None
    member_labels: Mapping[str, str | None] = field(default_factory=dict)
    text: str = ""  # filled when read back from the store
    # the combined row's distribution, filled when read back from the store: for a multi-label or span task
    # each element's confidence (labeler.confidence.elements), which the review tools score elements with
    elements: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Review:
    item_id: str
    reviewer: str
    label: str
    correction_reason: str | None = None
    note: str | None = None
    source: str = ""
    adjudication: bool = False
    origin: str | None = None  # labeler.review.origin.Origin.key(): tool, server, project; None before migration 6
