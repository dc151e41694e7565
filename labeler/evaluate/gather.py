"""Evaluation: gather a run's LLM labels and every human label for it, then measure the error structure.

    gather(run_dir, human_file)  →  EvalInputs     (the run store, its reviews/queue tables, a CSV/JSONL)
    build_metrics(inputs)        →  metrics dict   (JSON-able; the maths is labeler.evaluate.metrics, imported here
                                                    lazily so that registering the command stays cheap)
    labeler eval RUN_DIR         →  runs/<id>/report/ (report.md, report.html, PNGs, metrics.json)

Human labels come from the run's `reviews` table (the review workflow), the input's gold column (reviewer
"gold") and `--human FILE` (columns id,label[,reviewer]). An item's reference label is the majority of its
human labels; gold breaks ties, otherwise the earlier label in the label set (metrics.reference_label).
Skipped items (empty text) are left out; items the LLM failed on count as errors ("no label").
"""

from __future__ import annotations

import csv
import json
import sqlite3
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from labeler.config import CONFIDENCE_METHODS, ReviewConfig
from labeler.errors import InputError, LabelerError
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
    routed: frozenset[str]  # items queued for a reason other than the audit
    queue_size: int


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


# --- gathering ---------------------------------------------------------------------------------------------


def read_human_file(path: Path) -> list[tuple[str, str, str]]:
    """(id, reviewer, label) rows from a CSV or JSONL file with columns id, label and optionally reviewer."""
    if not path.exists():
        raise InputError(f"human label file {path} not found; pass a CSV or JSONL with columns id,label[,reviewer]")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        with path.open(encoding="utf-8") as fh:
            recs = [json.loads(line) for line in fh if line.strip()]
    elif path.suffix.lower() in (".csv", ".tsv"):
        with path.open(encoding="utf-8", newline="") as fh:
            recs = list(csv.DictReader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
    else:
        raise InputError(f"{path.name}: unknown format; give human labels as .csv or .jsonl (columns id,label)")
    if recs and not {"id", "label"} <= set(recs[0]):
        raise InputError(f"{path.name} needs columns id and label (has: {', '.join(recs[0])}); rename them")
    out = []
    for r in recs:
        if r.get("label") in (None, ""):
            continue
        out.append((str(r["id"]).strip(), str(r.get("reviewer") or "file"), str(r["label"]).strip()))
    return out


def _read_audit(conn: sqlite3.Connection, tables: set[str], ids: set[str], notes: list[str]) -> AuditDesign | None:
    if "queue" not in tables:
        return None
    strata: dict[str, str] = {}
    probs: dict[str, float] = {}
    routed = set()
    size = 0
    for r in conn.execute("SELECT item_id, reasons, audit, inclusion_prob, stratum FROM queue"):
        if r["item_id"] not in ids:
            continue
        size += 1
        reasons = json.loads(r["reasons"] or "[]")
        if any(x != "audit" for x in reasons):
            routed.add(r["item_id"])
        if r["audit"] or "audit" in reasons:
            strata[r["item_id"]] = r["stratum"] or "all"
            if r["inclusion_prob"]:
                probs[r["item_id"]] = float(r["inclusion_prob"])
    if not strata:
        return AuditDesign({}, {}, frozenset(routed), size)
    populations: dict[str, int] = {}
    if "audit_strata" in tables:
        populations = {r["stratum"]: int(r["population"]) for r in conn.execute("SELECT * FROM audit_strata")}
    for h in set(strata.values()) - set(populations):
        members = [i for i, s in strata.items() if s == h]
        if all(i in probs for i in members):
            populations[h] = round(sum(1 / probs[i] for i in members))
        else:
            populations[h] = len(ids) if len(set(strata.values())) == 1 else len(members)
            notes.append(f"stratum {h!r} has no size recorded; assumed {populations[h]} items")
    return AuditDesign(strata, populations, frozenset(routed), size)


def gather(run_dir: Path, *, human_file: Path | None = None) -> EvalInputs:
    """Read a run (and optional extra human labels) into EvalInputs."""
    from labeler.export import item_rows

    store = RunStore.open(run_dir)
    try:
        manifest = store.manifest
        labels = tuple(manifest["labels"])
        cfg = manifest.get("config") or {}
        price = float(cfg.get("review", {}).get("price_per_label", ReviewConfig().price_per_label))
        routing = cfg.get("routing", {})
        primary = manifest["members"][0]["name"]
        members = [m["name"] for m in manifest["members"]]
        notes: list[str] = []

        tables = {t for t in ("combined", "reviews", "queue", "audit_strata") if store.has_table(t)}
        dists = {
            r["item_id"]: json.loads(r["distributions"])
            for r in store.conn.execute("SELECT item_id, distributions FROM results WHERE member = ?", (primary,))
        }
        if "combined" in tables:
            for r in store.conn.execute("SELECT item_id, distribution FROM combined"):
                if r["distribution"]:
                    dists.setdefault(r["item_id"], {})["ensemble"] = json.loads(r["distribution"])
        ids, texts, pred, own, human = [], [], [], [], []
        conf: dict[str, list[float | None]] = {m: [] for m in (*ROUTED, *CONFIDENCE_METHODS)}
        member_labels: dict[str, list[str | None]] = {m: [] for m in members} if len(members) > 1 else {}
        n_skipped = 0
        for row in item_rows(store, with_text=True):
            if row["status"] == "skipped":
                n_skipped += 1
                continue
            ids.append(row["id"])
            texts.append(row["text"])
            # as the router reads a row: the ensemble's label and confidence stand for the LLM when present
            ens = row.get("ensemble_label")
            pred.append(ens if ens is not None else row["label"] if row["status"] == "labeled" else None)
            own.append(row.get(f"label__{primary}") if member_labels else pred[-1])
            calibrated, ens_conf = row.get("calibrated_confidence"), row.get("ensemble_confidence")
            routing_conf = calibrated if calibrated is not None else ens_conf if ens is not None else None
            conf["confidence"].append(routing_conf if routing_conf is not None else row["confidence"])
            conf["calibrated"].append(calibrated)
            conf["ensemble"].append(ens_conf)
            for m in CONFIDENCE_METHODS:
                conf[m].append(row.get(f"conf_{m}"))
            for m in member_labels:
                member_labels[m].append(row.get(f"label__{m}"))
            human.append({"gold": row["gold"]} if row.get("gold") not in (None, "") else {})
        if not ids:
            raise LabelerError(f"{run_dir} has no labelled items yet; run `labeler resume {run_dir}` first")
        index = {i: n for n, i in enumerate(ids)}

        reviewed: set[str] = set()
        reasons: Counter[str] = Counter()
        extra: list[tuple[str, str, str]] = []
        if "reviews" in tables:
            for r in store.conn.execute("SELECT item_id, reviewer, label, correction_reason FROM reviews"):
                if r["label"] in (None, ""):
                    continue
                extra.append((r["item_id"], r["reviewer"] or "reviewer", r["label"]))
                reviewed.add(r["item_id"])
                if r["correction_reason"]:
                    reasons[r["correction_reason"]] += 1
        if human_file is not None:
            from_file = read_human_file(human_file)
            if from_file and not any(i in index for i, _, _ in from_file):
                raise InputError(f"none of the ids in {human_file.name} are items of this run; check the id column")
            extra.extend(from_file)

        canon = {lab.lower(): lab for lab in labels}
        unknown: Counter[str] = Counter()
        missing = 0
        for item_id, reviewer, label in extra:
            if item_id not in index:
                missing += 1
                continue
            lab = canon.get(label.strip().lower())
            if lab is None:
                unknown[label] += 1
                continue
            human[index[item_id]][reviewer] = lab
        for h in human:  # gold labels outside the label set
            if "gold" in h and h["gold"] not in labels:
                g = canon.get(h["gold"].strip().lower())
                if g is None:
                    unknown[h.pop("gold")] += 1
                else:
                    h["gold"] = g
        if unknown:
            top = ", ".join(f"{k!r} ×{v}" for k, v in unknown.most_common(5))
            notes.append(f"{sum(unknown.values())} human labels are not in the label set and were left out ({top})")
        if missing:
            notes.append(f"{missing} human labels name ids that are not (non-skipped) items of this run")
        reviewed &= set(index)

        audit = _read_audit(store.conn, tables, set(index), notes)
        budget = None
        if routing.get("max_items"):
            budget = int(routing["max_items"])
        elif routing.get("max_dollars") and price > 0:
            budget = int(routing["max_dollars"] // price)
        totals = store.totals()
        probs = {
            m: tuple(None if m not in dists.get(i, {}) else {k: float(v) for k, v in dists[i][m].items()} for i in ids)
            for m in (*CONFIDENCE_METHODS, "ensemble")
        }
        return EvalInputs(
            run_id=str(manifest.get("run_id", run_dir.name)),
            labels=labels,
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
            llm_cost=float(totals["cost"]),
            tokens={"input": int(totals["input_tokens"]), "output": int(totals["output_tokens"])},
            price_per_label=price,
            review_budget=budget,
            n_skipped=n_skipped,
            notes=tuple(notes),
        )
    finally:
        store.close()
