"""A run's annotations, read from its store, as labeler.aggregate takes them, and the run's consensus.

Annotators: each LLM member (`llm:<member>`, its stored answer) and each human reviewer (the run's reviews:
imports, the TUI, the live pulls). Adjudications are not votes: they settle an item (labeler.humans). The
input's gold column is not an annotator either: it is what the estimates are checked against
(labeler.evaluate.annotators). Labels are matched to the label set case-insensitively; a multi-label answer
is its stored text decoded by the task type (a JSON list of names).

Self-consistency samples are not annotators: a member is one annotator (its greedy answer) whatever its
`[confidence] samples`, and its samples' vote shares (`consistency`) are its distribution. Samples of one
member are exchangeable draws of one model and share its mistakes on an item; counted as annotators of
their own (`llm:<member>#<k>`) they outvote the reviewers. Measured (`python eval/aggregate.py --samples`,
BBC, one member with 5 samples that share the item's error, 20 seeds): Dawid–Skene right on 96.0% with
one annotator per member against 83.2% with one per sample when every item has 2 reviewers (86.9% against
82.0% when 30% have). Only samples that erred independently, as separate members do, gained from the count
(99.1% against 96.0%), so there is no switch: an independent opinion is a member of its own.

The LLM's distribution of an item (for CROWDLAB) is the combined distribution, else the first member's
under the first of the task's confidence methods that it stored; when the run is calibrated, the
calibrated confidence replaces the top label's share and the rest is scaled to fill the remainder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labeler.aggregate import aggregate
from labeler.aggregate.multilabel import MultiConsensus, aggregate_multilabel
from labeler.aggregate.table import Annotations, Consensus
from labeler.errors import AggregateError
from labeler.record import ItemRecord, records
from labeler.store import RunStore

LLM_PREFIX = "llm:"


@dataclass(frozen=True)
class RunAnnotations:
    kind: str  # "single" or "multi_label"
    labels: tuple[str, ...]
    items: tuple[str, ...]
    triples: tuple[tuple[str, str, Any], ...]  # (item, annotator, label name | tuple of names)
    humans: tuple[str, ...]  # reviewer names, in first-answer order
    members: tuple[str, ...]  # "llm:<member>" names
    probs: np.ndarray  # (n, K) the LLM's distribution per item (uniform where it has none)
    adjudicated: Mapping[str, Any] = field(default_factory=dict)  # item -> adjudicated label
    gold: Mapping[str, Any] = field(default_factory=dict)  # item -> the input's gold label

    def annotations(self) -> Annotations:
        """The single-label Annotations (items x annotators)."""
        return Annotations.from_triples(self.triples, self.labels, items=self.items)


def _distribution(rec: ItemRecord, labels: tuple[str, ...], methods: tuple[str, ...]) -> np.ndarray:
    dist: Mapping[str, float] | None = None
    if rec.combined is not None and rec.combined.distribution:
        dist = rec.combined.distribution
    else:
        dist = next((rec.primary.distributions[m] for m in methods if m in rec.primary.distributions), None)
    p = np.array([float((dist or {}).get(lab, 0.0)) for lab in labels])
    if p.sum() <= 0:
        return np.full(len(labels), 1.0 / len(labels))
    p /= p.sum()
    cal = rec.calibrated_confidence
    if cal is not None and rec.label in labels:
        top = labels.index(rec.label)
        rest = 1.0 - p[top]
        p = p * ((1.0 - cal) / rest) if rest > 0 else np.full(len(labels), (1.0 - cal) / max(len(labels) - 1, 1))
        p[top] = cal
    return p


def read_annotations(store: RunStore) -> RunAnnotations:
    task = store.task()
    kind = task.kind.type
    if kind not in ("single", "multi_label"):
        raise AggregateError(f"aggregation covers single- and multi-label tasks, not task.type = {kind!r}")
    labels = task.label_names
    canon = {lab.lower(): lab for lab in labels}
    decoder: Any = None
    if kind == "multi_label":
        from labeler.tasktypes.registry import for_task

        decoder = for_task(task)

    def read(text: str | None) -> Any:
        if text is None:
            return None
        if decoder is None:
            return canon.get(str(text).strip().lower())
        try:
            names = decoder.decode(text)
        except ValueError:
            return None
        return tuple(canon[n.lower()] for n in names if n.lower() in canon)

    methods = tuple(task.confidence.methods) or ("logprob",)
    items: list[str] = []
    triples: list[tuple[str, str, Any]] = []  # reviewers' answers first (a vote's tie goes to the first annotator)
    llm: list[tuple[str, str, Any]] = []
    members: dict[str, None] = {}
    probs = []
    for rec in records(store):
        if rec.status == "skipped":
            continue
        items.append(rec.id)
        probs.append(_distribution(rec, labels, methods))
        for name, lab in rec.member_labels.items():
            value = read(lab)
            if value is not None:
                members.setdefault(LLM_PREFIX + name, None)
                llm.append((rec.id, LLM_PREFIX + name, value))
    known = set(items)
    humans: dict[str, None] = {}
    adjudicated: dict[str, Any] = {}
    for item_id, revs in store.reviews().items():
        if item_id not in known:
            continue
        for r in revs:
            value = read(r.label)
            if value is None:
                continue
            if r.adjudication:
                adjudicated[item_id] = value
            else:
                humans.setdefault(r.reviewer, None)
                triples.append((item_id, r.reviewer, value))
    triples.extend(llm)
    gold = {i: v for i, g in store.gold_labels().items() if i in known and (v := read(g)) is not None}
    k = len(labels)
    return RunAnnotations(
        kind, labels, tuple(items), tuple(triples), tuple(humans), tuple(members),
        np.array(probs) if probs else np.zeros((0, k)), adjudicated, gold,
    )


def consensus_of(ra: RunAnnotations, method: str, *, seed: int = 0) -> Consensus | MultiConsensus:
    """The consensus of every annotator of the run by `method`."""
    if ra.kind == "multi_label":
        if method == "crowdlab":
            raise AggregateError(
                "crowdlab needs p(yes) per label, which a multi-label run does not store for the labels the LLM "
                "left out; use vote or dawid_skene"
            )
        return aggregate_multilabel(ra.triples, ra.labels, method, items=ra.items, seed=seed)
    return aggregate(ra.annotations(), method, probs=ra.probs, humans=ra.humans, seed=seed)


def encoded_consensus(store: RunStore, method: str) -> dict[str, tuple[str, float]]:
    """item -> (the consensus label as the store writes labels, its posterior): what labeler.humans takes."""
    ra = read_annotations(store)
    c = consensus_of(ra, method)
    answered = {i for i, _, _ in ra.triples}  # an item nobody answered has no consensus (not the prior's)
    if isinstance(c, MultiConsensus):
        from labeler.tasktypes.registry import for_task

        kind = for_task(store.task())
        return {i: (str(kind.encode(s)), p) for i, (s, p) in c.by_item().items() if i in answered}
    return {i: v for i, v in c.by_item().items() if i in answered}
