"""Evaluation: gather a run's LLM labels and every human label for it, then measure the error structure.

    gather(run_dir, human_file)  →  EvalInputs     (the run store, its reviews/queue tables, a CSV/JSONL)
    build_metrics(inputs)        →  metrics dict   (JSON-able; the maths is labeler.evaluate.metrics, imported here
                                                    lazily so that registering the command stays cheap)
    labeler eval RUN_DIR         →  runs/<id>/report/ (report.md, report.html, PNGs, metrics.json)

The LLM's side is one ItemRecord per item (labeler.record: label, routing confidence, members). Human
labels come from the run's reviews (the review workflow), the input's gold column (reviewer "gold") and
`--human FILE` (columns id,label[,reviewer]); an item's reference label follows labeler.humans, the rule
the final dataset uses too (adjudication wins; majority; a tie goes to gold, else the item has none).
Skipped items (empty text) are left out; items the LLM failed on count as errors ("no label").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labeler.config import CONFIDENCE_METHODS, ReviewConfig
from labeler.errors import InputError, LabelerError
from labeler.humans import read_humans
from labeler.record import ItemRecord, records
from labeler.store import RunStore

ROUTED = ("confidence", "calibrated", "ensemble")  # confidences of the final label; the rest are the first member's
LEVEL = 0.95
ECE_BINS = 10
NO_LABEL = "(no label)"


@dataclass(frozen=True)
class AuditDesign:
    """The random audit drawn by the router: which items, their strata and the strata sizes."""

    strata: Mapping[str, str]  # audited item id -> stratum
    populations: Mapping[str, int]  # stratum -> number of corpus items in it
    routed: frozenset[str]  # items queued as doubtful: failed, low confidence or disagreement
    queue_size: int
    picked: frozenset[str] = frozenset()  # items queued only by active learning (the student's choice)

    def summary(self, *, with_answer: int, reviewed: int) -> dict[str, Any]:
        """The audit's head in metrics.json: its size, strata, the routing it measures; `self_weighting`: every
        stratum sampled at one rate (item-bootstrap figures on the audit then describe the corpus too)."""
        sampled = {h: sum(s == h for s in self.strata.values()) for h in self.populations}
        rates = {self.populations[h] / sampled[h] for h in self.populations if sampled[h]}
        return {
            "audited": len(self.strata),
            "audited_with_label": with_answer,
            "strata": {h: {"population": n, "sampled": sampled[h]} for h, n in self.populations.items()},
            "routed": len(self.routed),
            "queue_size": self.queue_size,
            "reviewed": reviewed,
            "self_weighting": max(rates, default=1) - min(rates, default=1) < 1e-9,
        }


@dataclass(frozen=True)
class EvalInputs:
    """Everything evaluation reads, one entry per non-skipped item in input order."""

    run_id: str
    labels: tuple[str, ...]
    ids: tuple[str, ...]
    texts: tuple[str, ...]
    pred: tuple[str | None, ...]  # the LLM's label (the ensemble's when there is one); None when it failed
    primary_pred: tuple[str | None, ...]  # the first member's own label: what its method confidences refer to
    confidences: Mapping[str, tuple[float | None, ...]]  # method -> confidence of `pred`
    distributions: Mapping[str, tuple[Mapping[str, float] | None, ...]]  # method -> distribution per item
    member_labels: Mapping[str, tuple[str | None, ...]]  # ensemble member -> its label, when several
    human: tuple[Mapping[str, str], ...]  # reviewer -> label, per item
    reviewed: frozenset[str]  # ids with a label in the run's reviews table (they replace the LLM's)
    correction_reasons: Mapping[str, int] = field(default_factory=dict)
    audit: AuditDesign | None = None
    llm_cost: float = 0.0
    tokens: Mapping[str, int] = field(default_factory=dict)
    price_per_label: float = ReviewConfig().price_per_label
    review_budget: int | None = None  # from routing.max_items / max_dollars when there is no queue
    n_skipped: int = 0
    notes: tuple[str, ...] = ()
    reference: tuple[str | None, ...] = ()  # per item: the human label by labeler.humans' rule (None: none/tie)


# --- gathering ---------------------------------------------------------------------------------------------


def read_human_file(path: Path) -> list[tuple[str, str, str]]:
    """(id, reviewer, label) rows from a CSV, TSV or JSONL file with columns id, label and optionally reviewer."""
    from labeler.inputs import read_records

    out = []
    for _, r in read_records(path, what="human label file"):
        if not {"id", "label"} <= set(r):
            raise InputError(f"{path.name} needs columns id and label (has: {', '.join(r)}); rename them")
        if r.get("label") in (None, ""):
            continue
        out.append((str(r["id"]).strip(), str(r.get("reviewer") or "file"), str(r["label"]).strip()))
    return out


def human_file_rows(human_file: Path | None, index: Mapping[str, int]) -> list[tuple[str, str, str]]:
    """`--human FILE`'s rows (read_human_file), refused in one line when none of its ids is an item of the run."""
    extra = read_human_file(human_file) if human_file is not None else []
    if extra and not any(i in index for i, _, _ in extra):
        raise InputError(
            f"none of the ids in {human_file.name if human_file else ''} are items of this run; check the id column"
        )
    return extra


def labelled_records(store: RunStore, run_dir: Path) -> tuple[list[ItemRecord], int]:
    """The run's items to evaluate, in input order, and how many were skipped (empty text); one line naming
    `labeler resume` when none is labelled yet. Both gatherings (single labels, annotations) start here."""
    recs: list[ItemRecord] = []
    n_skipped = 0
    for rec in records(store):
        if rec.status == "skipped":
            n_skipped += 1
        else:
            recs.append(rec)
    if not recs:
        raise LabelerError(f"{run_dir} has no labelled items yet; run `labeler resume {run_dir}` first")
    return recs, n_skipped


def spend(store: RunStore) -> tuple[float, dict[str, int]]:
    """The run's LLM cost and its input and output tokens."""
    totals = store.totals()
    return float(totals["cost"]), {"input": int(totals["input_tokens"]), "output": int(totals["output_tokens"])}


def _read_audit(store: RunStore, ids: set[str], notes: list[str]) -> AuditDesign | None:
    queue = [e for e in store.queue() if e.item_id in ids]
    if not queue:
        return None
    strata: dict[str, str] = {}
    probs: dict[str, float] = {}
    routed = {e.item_id for e in queue if any(x not in ("audit", "active_learning") for x in e.reasons)}
    picked = {e.item_id for e in queue if "active_learning" in e.reasons} - routed
    for e in queue:
        if e.audit or "audit" in e.reasons:
            strata[e.item_id] = e.stratum or "all"
            if e.inclusion_prob:
                probs[e.item_id] = float(e.inclusion_prob)
    if not strata:
        return AuditDesign({}, {}, frozenset(routed), len(queue), frozenset(picked))
    populations = {s.name: s.population for s in store.audit_strata()}
    for h in set(strata.values()) - set(populations):
        members = [i for i, s in strata.items() if s == h]
        if all(i in probs for i in members):
            populations[h] = round(sum(1 / probs[i] for i in members))
        else:
            populations[h] = len(ids) if len(set(strata.values())) == 1 else len(members)
            notes.append(f"stratum {h!r} has no size recorded; assumed {populations[h]} items")
    return AuditDesign(strata, populations, frozenset(routed), len(queue), frozenset(picked))


def gather(run_dir: Path, *, human_file: Path | None = None) -> EvalInputs:
    """Read a run (and optional extra human labels) into EvalInputs."""
    store = RunStore.open(run_dir)
    try:
        task = store.task()
        if task.kind.type != "single":
            raise LabelerError(f"{run_dir} is a {task.kind.type} run; evaluate it with `labeler eval {run_dir}`")
        manifest = store.manifest
        labels = task.label_names
        members = [m["name"] for m in manifest["members"]]
        several = len(members) > 1
        notes: list[str] = []
        ids, texts, pred, own = [], [], [], []
        conf: dict[str, list[float | None]] = {m: [] for m in (*ROUTED, *CONFIDENCE_METHODS)}
        member_labels: dict[str, list[str | None]] = {m: [] for m in members} if several else {}
        dists: list[dict[str, Mapping[str, float]]] = []
        recs, n_skipped = labelled_records(store, run_dir)
        for rec in recs:
            ids.append(rec.id)
            texts.append(rec.text)
            pred.append(rec.label)
            own.append(rec.primary_label if several else rec.label)
            conf["confidence"].append(rec.confidence)
            conf["calibrated"].append(rec.calibrated_confidence)
            conf["ensemble"].append(rec.ensemble_confidence)
            for m, v in rec.method_confidences().items():
                conf[m].append(v)
            for m in member_labels:
                member_labels[m].append(rec.member_labels.get(m))
            dists.append(rec.distributions())
        index = {i: n for n, i in enumerate(ids)}

        extra = human_file_rows(human_file, index)
        humans = read_humans(store, labels, extra=extra)
        human: list[dict[str, str]] = [{} for _ in ids]
        reference: list[str | None] = [None] * len(ids)
        reasons: Counter[str] = Counter()
        outside = 0
        for item_id, verdict in humans.verdicts.items():
            if item_id not in index:
                outside += 1
                continue
            human[index[item_id]] = dict(verdict.votes)
            reference[index[item_id]] = verdict.label
            reasons.update(humans.correction_reasons.get(item_id, ()))
        ties = sum(v.tie and v.adjudication is None for i, v in humans.verdicts.items() if i in index)
        if humans.unknown_labels:
            top = ", ".join(f"{k!r} ×{v}" for k, v in Counter(humans.unknown_labels).most_common(5))
            notes.append(
                f"{sum(humans.unknown_labels.values())} human labels are not in the label set and were left out ({top})"
            )
        if humans.unknown_items or outside:
            notes.append(
                f"{humans.unknown_items + outside} human labels name ids that are not (non-skipped) items of this run"
            )
        if ties:
            notes.append(
                f"{ties} items have human labels that tie and no adjudication: their reference is the earliest "
                "answer among the tied labels (labeler.humans);"
                " adjudicate them with `labeler review import --adjudicate`"
            )
        reviewed = set(store.reviews()) & set(index)  # the review workflow's items (not --human files, not gold)

        audit = _read_audit(store, set(index), notes)
        routing, price = task.routing, task.review.price_per_label
        budget = None
        if routing.max_items:
            budget = int(routing.max_items)
        elif routing.max_dollars and price > 0:
            budget = int(routing.max_dollars // price)
        llm_cost, tokens = spend(store)
        probs = {
            m: tuple(None if m not in d else {k: float(v) for k, v in d[m].items()} for d in dists)
            for m in (*CONFIDENCE_METHODS, "ensemble")
        }
        return EvalInputs(
            run_id=str(manifest.get("run_id", run_dir.name)),
            labels=tuple(labels),
            ids=tuple(ids),
            texts=tuple(texts),
            pred=tuple(pred),
            primary_pred=tuple(own),
            confidences={m: tuple(v) for m, v in conf.items() if any(x is not None for x in v)},
            distributions={m: v for m, v in probs.items() if any(x is not None for x in v)},
            member_labels={m: tuple(v) for m, v in member_labels.items()},
            human=tuple(human),
            reviewed=frozenset(reviewed),
            correction_reasons=dict(reasons),
            audit=audit,
            llm_cost=llm_cost,
            tokens=tokens,
            price_per_label=price,
            review_budget=budget,
            n_skipped=n_skipped,
            notes=tuple(notes),
            reference=tuple(reference),
        )
    finally:
        store.close()
