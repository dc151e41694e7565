"""Human labels: one rule for "the human label" of an item, used by calibration, evaluation and the final dataset.

Votes are every reviewer's label for the item (imported reviews, the terminal review, `--human` files)
and the input's gold column (as the reviewer "gold"). The rule:

    1. an adjudication (`labeler review import --adjudicate`) settles the item: the latest one wins
    2. else the majority of the votes
    3. a tie goes to gold when gold is among the tied labels
    4. else to the earliest answer among the tied labels (the first reviewer to answer, by import time)
    Ties stay flagged (tie=True), so they can be adjudicated; an adjudication then replaces the choice and
settles the tie (tie=False; the votes stay visible).

Aggregation is the rule's other mode (`labeler export --consensus METHOD`, labeler.aggregate): an
adjudication still settles the item; otherwise the consensus of every annotator of the item (each LLM
member and each reviewer, weighed by the method's estimate of their confusion matrices) decides, with its
posterior, source "consensus". The caller computes the consensus (labeler.aggregate.collect) and passes
item -> (label, posterior); the order of precedence is decided here.

The final dataset and the evaluation reference both use this rule, so they agree on every item. Why not
leave tied items without a label, or break ties by label order or by the LLM's label: dropping them would
take exactly the hard items out of the random audit (biasing it), label order is arbitrary, and the
LLM's label would make the LLM look right where humans found the item hard. The earliest answer is a
human's answer and depends on nothing the model did.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from labeler.store.run import RunStore

GOLD = "gold"


@dataclass(frozen=True)
class HumanLabel:
    """The human verdict on one item. `label` None: nobody labeled it. tie: the votes tied (see the rule)."""

    label: str | None
    source: str | None  # "adjudicated", "human" (reviewers decided), "gold" (only the gold column), "consensus", None
    tie: bool
    votes: Mapping[str, str] = field(default_factory=dict)  # reviewer -> label in answer order (no adjudications)
    adjudication: str | None = None
    posterior: float | None = None  # the consensus posterior of `label` (aggregation mode only)


def decide(
    votes: Mapping[str, str], *, adjudication: str | None = None, consensus: tuple[str, float] | None = None
) -> HumanLabel:
    """Apply the rule of the module docstring to one item's votes (reviewer -> label); with `consensus`
    (label, posterior) the aggregation mode: adjudication, else the consensus."""
    counts = Counter(votes.values())
    top = max(counts.values()) if counts else 0
    tied = [v for v, c in counts.items() if c == top]
    tie = len(tied) > 1
    if adjudication is not None:
        return HumanLabel(adjudication, "adjudicated", False, dict(votes), adjudication)  # settled: no tie
    if consensus is not None:
        return HumanLabel(consensus[0], "consensus", False, dict(votes), None, consensus[1])
    if not counts:
        return HumanLabel(None, None, False, {})
    if not tie:
        label = tied[0]
    elif votes.get(GOLD) in tied:
        label = votes[GOLD]
    else:
        label = next(v for v in votes.values() if v in tied)  # votes are in answer order
    source = "gold" if set(votes) == {GOLD} else "human"
    return HumanLabel(label, source, tie, dict(votes))


@dataclass(frozen=True)
class RunHumans:
    """Every human label of a run, read once: per item its verdict, plus what could not be used."""

    verdicts: Mapping[str, HumanLabel]  # item id -> verdict (only items with at least one vote)
    correction_reasons: Mapping[str, tuple[str, ...]]  # item id -> the reviewers' correction reasons
    unknown_labels: Mapping[str, int]  # human labels outside the label set -> count (left out)
    unknown_items: int  # votes naming ids that are not items of the run

    def label(self, item_id: str) -> str | None:
        v = self.verdicts.get(item_id)
        return None if v is None else v.label


def _annotated(store: RunStore) -> bool:
    """Whether the run is of a multi-label or span task, whose labels are encoded annotations (`kind.encode`,
    canonical as the review import and pull store them): votes then compare as those texts."""
    from labeler.errors import RunStoreError

    try:
        return store.task().kind.type != "single"
    except RunStoreError:  # no config snapshot: a single-label run of an older version
        return False


def read_humans(
    store: RunStore,
    labels: Sequence[str],
    *,
    extra: Iterable[tuple[str, str, str]] = (),
    use_gold: bool = True,
    consensus: Mapping[str, tuple[str, float]] | None = None,
) -> RunHumans:
    """The run's human labels: its reviews, its gold column (unless use_gold=False) and `extra`
    (item id, reviewer, label) triples, e.g. from `labeler eval --human FILE`. Labels are matched to the
    label set case-insensitively and stored as the config spells them; the rest are counted, not used. A
    multi-label or span run's labels are encoded annotations (canonical as the review import stores them):
    votes compare as those texts. `consensus` (item -> (label, posterior)) switches to the aggregation mode
    for the items it names."""
    canon = {lab.lower(): lab for lab in labels}
    annotated = _annotated(store)
    ids = store.item_ids()
    votes: dict[str, dict[str, str]] = {}
    adjudicated: dict[str, str] = {}
    reasons: dict[str, list[str]] = {}
    unknown: Counter[str] = Counter()
    missing = 0

    def add(item_id: str, reviewer: str, label: str) -> str | None:
        nonlocal missing
        if item_id not in ids:
            missing += 1
            return None
        lab = str(label) if annotated else canon.get(str(label).strip().lower())
        if lab is None:
            unknown[str(label)] += 1
        return lab

    if use_gold:
        for item_id, gold in store.gold_labels().items():
            lab = add(item_id, GOLD, gold)
            if lab is not None:
                votes.setdefault(item_id, {})[GOLD] = lab
    for item_id, revs in store.reviews().items():
        for r in revs:
            lab = add(item_id, r.reviewer, r.label)
            if lab is None:
                continue
            if r.adjudication:
                adjudicated[item_id] = lab  # oldest first: the latest adjudication wins
            else:
                votes.setdefault(item_id, {})[r.reviewer] = lab
            if r.correction_reason:
                reasons.setdefault(item_id, []).append(r.correction_reason)
    for item_id, reviewer, label in extra:
        lab = add(item_id, reviewer, label)
        if lab is not None:
            votes.setdefault(item_id, {})[reviewer] = lab
    agg = consensus or {}
    verdicts = {
        i: decide(votes.get(i, {}), adjudication=adjudicated.get(i), consensus=agg.get(i))
        for i in sorted(set(votes) | set(adjudicated) | set(agg))
    }
    return RunHumans(verdicts, {i: tuple(r) for i, r in reasons.items()}, dict(unknown), missing)
