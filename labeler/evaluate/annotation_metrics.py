"""Measuring multi-label and span runs: the metrics dict (JSON-able) of AnnotationInputs.

The error structure is the task type's own `evaluate` (labeler.tasktypes: per-label or per-type precision,
recall, F1 and over-prediction with item-bootstrap intervals, and the rest of its table), run on the items
with a human annotation and again on the random audit's items. An item the LLM failed on counts as an
empty annotation (every human label or span of it missed) and is counted in the data section.

The audit's corpus estimates are design-based as for single labels (labeler.evaluate.audit): the share of
items whose annotation is exactly the human one (every label; every span with its offsets and type), over
the whole corpus, over the items no human saw and for the final dataset, each a stratified (Hájek) share
with its Wilson interval at the effective sample size; for multi-label also each label's corpus share.
The per-label figures on the audited items are item-bootstrap estimates; when the strata were sampled at
different rates they describe the audit sample, not the corpus, and the metrics say so (`self_weighting`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from labeler.errors import LabelerError
from labeler.evaluate.annotations import AnnotationInputs
from labeler.evaluate.gather import LEVEL
from labeler.evaluate.measure import jsonable


def _empty(value: Any) -> Any:
    return () if value is None else value


def _audit(inputs: AnnotationInputs, *, n_boot: int, seed: int) -> dict[str, Any] | None:
    from labeler.evaluate.audit import audit_accuracy

    a = inputs.audit
    if a is None or not a.strata:
        return None
    index = {i: n for n, i in enumerate(inputs.ids)}
    rows = [index[i] for i in a.strata if inputs.reference[index[i]] is not None]
    out = a.summary(with_answer=len(rows), reviewed=len(inputs.reviewed))
    if len(a.strata) > len(rows):
        out["note"] = (f"{len(a.strata) - len(rows)} audited items have no human annotation yet; the estimates "
                       "assume they are like the rest")
    if not rows:
        return out
    truth = [inputs.reference[i] for i in rows]
    pred = [_empty(inputs.pred[i]) for i in rows]
    exact = [float(inputs.kind.agreement(t, p) == 1.0) for t, p in zip(truth, pred, strict=True)]
    strata = [a.strata[inputs.ids[i]] for i in rows]
    acc = audit_accuracy(exact, strata, a.populations, [inputs.ids[i] not in a.routed for i in rows],
                         n_items=len(inputs.ids), n_reviewed=len(inputs.reviewed),
                         waiting=len(a.routed - inputs.reviewed), level=LEVEL)
    if acc.unbounded_waiting:
        out["note"] = f"{out.get('note', '')} {acc.waiting_note('exact-match share')}".strip()
    out.update({
        "exact_match": acc.all.to_dict() | {"effective_n": acc.n_eff},
        "unseen_exact_match": acc.unseen.to_dict() | {"effective_n": acc.n_eff_unseen,
                                                      "audited_in_domain": acc.audited_unseen},
        "final_exact_match": acc.final.to_dict() | {"waiting_for_review": acc.waiting},
        "evaluation": jsonable(inputs.kind.evaluate(truth, pred, n_boot=n_boot, seed=seed)),
    })
    out.update(EXTRAS[inputs.kind.name].audit(inputs, truth, strata, a.populations))
    return out


def _label_share(inputs: AnnotationInputs, truth: Sequence[Any], strata: Sequence[str],
                 populations: Mapping[str, int]) -> dict[str, Any]:
    """Each label's corpus share: the LLM's census, and the audit's stratified estimate."""
    from labeler.evaluate.audit import stratified_proportion

    share = []
    for lab in inputs.labels:
        e, _ = stratified_proportion([float(lab in t) for t in truth], strata, populations=populations, level=LEVEL)
        llm = sum(lab in _empty(p) for p in inputs.pred) / len(inputs.ids)
        share.append({"label": lab, "llm": llm, "audit": e.to_dict()})
    return {"label_share": share}


def _humans(inputs: AnnotationInputs, *, n_boot: int, seed: int) -> dict[str, Any] | None:
    """On the items with several human annotations: how far humans agree with each other (mean over pairs)
    and the LLM with each of them (mean over humans), by the task type's `agreement` (multi_label: Jaccard
    of the label sets; spans: F1 of exact span matches), with item-bootstrap intervals."""
    import numpy as np

    from labeler.evaluate.intervals import boot_items, from_samples

    kind = inputs.kind
    rows = [i for i, h in enumerate(inputs.human) if len(h) >= 2]
    if not rows:
        return None
    per_item = []
    for i in rows:
        votes = [kind.decode(v) for v in inputs.human[i].values()]
        pairs = [kind.agreement(a, b) for j, a in enumerate(votes) for b in votes[j + 1:]]
        per_item.append([sum(pairs) / len(pairs), sum(kind.agreement(_empty(inputs.pred[i]), h) for h in votes)
                         / len(votes)])
    y = np.array(per_item)
    boot = boot_items(len(rows), lambda w: w @ y / len(rows), n_boot=n_boot, seed=seed + 2)
    point = y.mean(0)
    routed = inputs.audit.routed | inputs.audit.picked if inputs.audit is not None else frozenset()
    return {
        "items": len(rows),
        "human_vs_human": from_samples(float(point[0]), boot[:, 0], LEVEL).to_dict(),
        "llm_vs_human": from_samples(float(point[1]), boot[:, 1], LEVEL).to_dict(),
        "difference": from_samples(float(point[1] - point[0]), boot[:, 1] - boot[:, 0], LEVEL).to_dict(),
        "routed_items": sum(inputs.ids[i] in routed for i in rows),
    }


NONE = "(none)"


def label_confusions(truth: Sequence[Any], pred: Sequence[Any], texts: Sequence[str], *, top: int = 8,
                     n_examples: int = 3) -> list[dict[str, Any]]:
    """Which human label the LLM left out and which it put instead, per item: each missed label paired
    with each added one (NONE when the item has none of the other kind); the most frequent pairs with
    example texts."""
    pairs: dict[tuple[str, str], list[str]] = {}
    for t, p, text in zip(truth, pred, texts, strict=True):
        missed = [x for x in t if x not in p] or [NONE]
        added = [x for x in p if x not in t] or [NONE]
        for a in missed:
            for b in added:
                if (a, b) != (NONE, NONE):
                    pairs.setdefault((a, b), []).append(text)
    ranked = sorted(pairs.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:top]
    return [{"true": a, "predicted": b, "count": len(v), "examples": [x[:240] for x in v[:n_examples]]}
            for (a, b), v in ranked]


@dataclass(frozen=True)
class Extras:
    """What a task type adds to the report beyond its own `evaluate`: on the human-annotated items
    (truth, pred, texts) and on the audit (inputs, audited truth, strata, stratum sizes)."""

    measure: Callable[[Sequence[Any], Sequence[Any], Sequence[str]], dict[str, Any]]
    audit: Callable[[AnnotationInputs, Sequence[Any], Sequence[str], Mapping[str, int]], dict[str, Any]]


EXTRAS = {
    "multi_label": Extras(lambda t, p, x: {"label_confusions": label_confusions(t, p, x)}, _label_share),
    "spans": Extras(lambda t, p, x: {}, lambda inputs, t, s, n: {}),  # the span examples come with evaluate
}


def build_annotation_metrics(inputs: AnnotationInputs, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """All the numbers of a multi-label or span report, as a JSON-able dict (annotation_report shows them)."""
    n = len(inputs.ids)
    have = [i for i in range(n) if inputs.reference[i] is not None]
    if not have:
        raise LabelerError(
            "no human annotations for this run's items: add a gold column to the input, review items, "
            "or pass --human FILE (columns id,label)"
        )
    reviewers = Counter(r for h in inputs.human for r in h)
    routed = (inputs.audit.routed | inputs.audit.picked) if inputs.audit is not None else frozenset()
    truth = [inputs.reference[i] for i in have]
    pred = [_empty(inputs.pred[i]) for i in have]
    evaluation = inputs.kind.evaluate(truth, pred, n_boot=n_boot, seed=seed)
    out: dict[str, Any] = {
        "run_id": inputs.run_id,
        "task_type": inputs.kind.name,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "labels": list(inputs.labels),
        "settings": {"n_boot": n_boot, "seed": seed, "level": LEVEL},
        "data": {
            "items": n,
            "skipped": inputs.n_skipped,
            "failed": sum(p is None for p in inputs.pred),
            "failed_with_human": sum(inputs.pred[i] is None for i in have),
            "with_human": len(have),
            "with_several_humans": sum(len(h) >= 2 for h in inputs.human),
            "reviewers": dict(sorted(reviewers.items())),
            "reviewed_in_workflow": len(inputs.reviewed),
            "human_set_is_selected": len(have) < n and any(inputs.ids[i] in routed for i in have),
            "exact_items": sum(inputs.kind.agreement(t, p) == 1.0 for t, p in zip(truth, pred, strict=True)),
            "notes": list(inputs.notes),
        },
        "corrections": dict(inputs.correction_reasons),
        "evaluation": evaluation,
        **EXTRAS[inputs.kind.name].measure(truth, pred, [inputs.texts[i] for i in have]),
        "humans": _humans(inputs, n_boot=n_boot, seed=seed),
        "audit": _audit(inputs, n_boot=n_boot, seed=seed),
        "cost": {"llm_cost": inputs.llm_cost, "tokens": dict(inputs.tokens)},
    }
    return dict(jsonable(out))
