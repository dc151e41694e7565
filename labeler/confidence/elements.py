"""Confidence of annotations made of elements (multi_label: each label; spans: each typed span). Pure functions.

Per element of an item's annotation, its confidence is the share of the self-consistency samples (one member)
or of the voting members (an ensemble) that produced it, `tasktypes.element_shares`; an empty annotation has
one pseudo-element, EMPTY, whose confidence is the share of samples (members) that were empty too. The item's
confidence is the lowest element confidence: the item is as doubtful as its most doubtful element.

    answer_elements   one member's element confidences, from its answer and its samples
    item_confidence   the item's confidence: the lowest element confidence of the first method that has them
    combine_elements  the members' annotations of one item combined: each element kept when more than half of
                      the voting members produced it, its confidence the members' mean (a member without the
                      element counts 0), vote share (members whose annotation is the combined one), divergence
                      (1 - mean pairwise `TaskType.agreement`) and disagreement as for single labels
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from labeler.store.rows import CombinedRow
from labeler.tasktypes import TaskType, element_shares

EMPTY = "(empty)"  # the pseudo-element of an empty annotation
METHOD = "consistency"  # the confidence method that yields element shares (samples drawn at temperature > 0)


def answer_elements(value: Any, samples: Sequence[Any], kind: TaskType) -> dict[str, float] | None:
    """Element -> share of `samples` (decoded annotations; None = unparseable, left out) that contain it, for
    the elements of `value`; None when no sample parsed."""
    parsed = [s for s in samples if s is not None]
    if not parsed:
        return None
    mine = kind.elements(value)
    if not mine:
        return {EMPTY: sum(not kind.elements(s) for s in parsed) / len(parsed)}
    shares = element_shares(parsed, kind)
    return {e: shares.get(e, 0.0) for e in mine}


def item_confidence(dists: Mapping[str, Mapping[str, float]], methods: Sequence[str]) -> float | None:
    """The lowest element confidence under the first of `methods` that has element confidences."""
    for m in methods:
        d = dists.get(m)
        if d:
            return min(float(v) for v in d.values())
    return None


def _parts(value: Any) -> tuple[Any, ...]:
    return tuple(value or ())


def combine_elements(
    members: Mapping[str, tuple[Any, Mapping[str, float] | None] | None],
    kind: TaskType,
    *,
    min_vote_share: float,
    max_divergence: float,
    item_id: str = "",
) -> CombinedRow:
    """Combine one item's member annotations: member name -> (decoded annotation, its element confidences or
    None) or None for a member that failed or was skipped. The row's `label` is the encoded combined annotation,
    `distribution` its element confidences and `confidence` the lowest of them (none for a lone member that
    drew no samples)."""
    member_labels = {n: None if v is None else kind.encode(v[0]) for n, v in members.items()}
    voters = [v for v in members.values() if v is not None]
    if not voters:
        return CombinedRow(item_id, None, None, {}, None, None, None, False, member_labels)
    counts: dict[Any, int] = {}
    for value, _ in voters:
        for part in set(_parts(value)):
            counts[part] = counts.get(part, 0) + 1
    kept = kind.decode(kind.encode(tuple(p for p, c in counts.items() if c * 2 > len(voters))))
    names = dict(zip(_parts(kept), kind.elements(kept), strict=True))

    def own(conf: Mapping[str, float] | None, element: str, present: bool) -> float:
        return 0.0 if not present else 1.0 if conf is None else float(conf.get(element, 1.0))

    if len(voters) == 1 and voters[0][1] is None:  # one member, no samples: nothing says how sure it is
        dist: dict[str, float] = {}
    elif names:
        dist = {names[p]: sum(own(c, names[p], p in set(_parts(v))) for v, c in voters) / len(voters) for p in names}
    else:
        dist = {EMPTY: sum(own(c, EMPTY, not _parts(v)) for v, c in voters) / len(voters)}
    encoded = kind.encode(kept)
    share = sum(kind.encode(v) == encoded for v, _ in voters) / len(voters)
    pairs = list(itertools.combinations([v for v, _ in voters], 2))
    div = 1.0 - sum(kind.agreement(a, b) for a, b in pairs) / len(pairs) if pairs else 0.0
    return CombinedRow(
        item_id=item_id,
        label=encoded,
        confidence=min(dist.values()) if dist else None,
        distribution=dist,
        vote_share=share,
        entropy=None,
        divergence=div,
        disagree=share < min_vote_share or div > max_divergence,
        member_labels=member_labels,
    )


def disputed(members: Sequence[Any], kind: TaskType) -> list[str]:
    """The elements that some but not all of the voting members' annotations (decoded) contain."""
    if len(members) < 2:
        return []
    shares = element_shares(list(members), kind)
    return [e for e, p in shares.items() if p < 1.0]
