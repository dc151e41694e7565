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

import argparse
import csv
import json
import math
import sqlite3
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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


# --- measuring ---------------------------------------------------------------------------------------------


def jsonable(obj: Any) -> Any:
    """Dataclasses, numpy values and NaN/inf (→ None) made fit for strict JSON."""
    if hasattr(obj, "__dataclass_fields__"):
        return jsonable(asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _distinct_methods(inputs: EvalInputs) -> tuple[dict[str, str], str | None]:
    """Confidence methods to evaluate, each once (method -> how the report names it), and which of them
    is the one the router uses."""
    names = {
        "calibrated": "calibrated",
        "ensemble": "ensemble",
        "logprob": "logprob",
        "verbalized": "verbalized",
        "consistency": "consistency",
        "confidence": "confidence, used for routing",
    }
    out: dict[str, str] = {}
    routing = inputs.confidences.get("confidence")
    same = None
    for m, name in names.items():
        v = inputs.confidences.get(m)
        if v is None:
            continue
        if m == "confidence" and same is not None:
            break
        if v == routing and (m in ROUTED or inputs.primary_pred == inputs.pred):
            same = m
            name += ", used for routing" if m != "confidence" else ""
        out[m] = name
    return out, same


def _calibration(inputs: EvalInputs, ref: list[str | None], *, n_boot: int, seed: int) -> dict[str, Any]:
    from labeler.evaluate import metrics as M

    out: dict[str, Any] = {}
    for m, name in _distinct_methods(inputs)[0].items():
        c = inputs.confidences[m]
        pred = inputs.pred if m in ROUTED else inputs.primary_pred
        idx = [i for i in range(len(ref)) if ref[i] is not None and c[i] is not None and pred[i] is not None]
        if len(idx) < 2:
            continue
        dists = inputs.distributions.get(m)
        probs = None
        if dists is not None and all(dists[i] is not None for i in idx):
            probs = np.array([[dists[i].get(lab, 0.0) for lab in inputs.labels] for i in idx])  # type: ignore[union-attr]
        cal = M.calibration(
            [ref[i] for i in idx],
            [pred[i] for i in idx],
            confidence=[float(c[i]) for i in idx],  # type: ignore[arg-type]
            labels=inputs.labels,
            probs=probs,
            n_bins=ECE_BINS,
            n_boot=n_boot,
            seed=seed,
            level=LEVEL,
        )
        out[m] = {"name": name, **jsonable(cal)}
    return out


def _audit(inputs: EvalInputs, ref: list[str | None]) -> dict[str, Any] | None:
    from labeler.evaluate import metrics as M

    a = inputs.audit
    if a is None or not a.strata:
        return None
    index = {i: n for n, i in enumerate(inputs.ids)}
    rows = [index[i] for i in a.strata if ref[index[i]] is not None]
    unlabelled = len(a.strata) - len(rows)
    out: dict[str, Any] = {
        "audited": len(a.strata),
        "audited_with_label": len(rows),
        "strata": {
            h: {"population": n, "sampled": sum(s == h for s in a.strata.values())} for h, n in a.populations.items()
        },
        "routed": len(a.routed),
        "queue_size": a.queue_size,
        "reviewed": len(inputs.reviewed),
    }
    if unlabelled:
        out["note"] = f"{unlabelled} audited items have no human label yet; the estimates assume they are like the rest"
    if not rows:
        return out
    correct = [ref[i] == inputs.pred[i] for i in rows]
    strata = [a.strata[inputs.ids[i]] for i in rows]
    unseen = [inputs.ids[i] not in a.routed for i in rows]
    acc_all, n_eff = M.stratified_proportion(correct, strata, populations=a.populations, level=LEVEL)
    acc_unseen, n_eff_u = M.stratified_proportion(
        correct, strata, populations=a.populations, domain=unseen, level=LEVEL
    )
    # final dataset: reviewed items carry the human label (correct by definition); the others the LLM's, at
    # the unseen-domain accuracy, except routed items still waiting for review, which are harder
    n, r = len(inputs.ids), len(inputs.reviewed)
    waiting = len(a.routed - inputs.reviewed)
    acc_waiting = acc_unseen
    if waiting:
        routed = [not u for u in unseen]
        acc_waiting, _ = M.stratified_proportion(correct, strata, populations=a.populations, domain=routed)
        if not any(routed):
            acc_waiting = M.Estimate(acc_all.value, 0.0, 1.0)
            out["note"] = (
                out.get("note", "") + f" {waiting} routed items still wait for review and none of them was "
                "audited: their accuracy is bounded by 0–100% in the final-dataset interval."
            ).strip()
    final = M.Estimate(
        *(
            (r + (n - r - waiting) * getattr(acc_unseen, k) + waiting * getattr(acc_waiting, k)) / n
            for k in ("value", "low", "high")
        )
    )
    prev = M.ppi_prevalence(
        inputs.pred,
        [ref[i] for i in rows],
        [inputs.pred[i] for i in rows],
        audit_strata=strata,
        populations=a.populations,
        labels=inputs.labels,
        level=LEVEL,
    )
    out.update(
        {
            "llm_accuracy": acc_all.to_dict() | {"effective_n": n_eff},
            "unseen_accuracy": acc_unseen.to_dict() | {"effective_n": n_eff_u, "audited_in_domain": sum(unseen)},
            "final_accuracy": final.to_dict() | {"waiting_for_review": waiting},
            "prevalence": jsonable(prev),
        }
    )
    return out


def _budgets(n: int, extra: Sequence[int]) -> list[int]:
    grid = np.unique(np.r_[np.linspace(0, n, min(n, 40) + 1).round().astype(int), [b for b in extra if 0 <= b <= n]])
    return [int(b) for b in grid]


def build_metrics(inputs: EvalInputs, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """All the numbers of the report, as a JSON-able dict (see report.py for how they are shown)."""
    from labeler.evaluate import metrics as M  # scipy and scikit-learn load only when evaluating

    labels = inputs.labels
    n = len(inputs.ids)
    ref = [M.reference_label(h, labels=labels) for h in inputs.human]
    have = [i for i in range(n) if ref[i] is not None]
    if not have:
        raise LabelerError(
            "no human labels for this run's items: add a gold column to the input, review items, "
            "or pass --human FILE (columns id,label)"
        )
    reviewers = Counter(r for h in inputs.human for r in h)
    # routed (doubtful) items among the human-labelled ones, when those are not the whole corpus
    routed = inputs.audit.routed if inputs.audit is not None else frozenset()
    selected = len(have) < n and any(inputs.ids[i] in routed for i in have)
    out: dict[str, Any] = {
        "run_id": inputs.run_id,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "labels": list(labels),
        "settings": {"n_boot": n_boot, "seed": seed, "level": LEVEL, "ece_bins": ECE_BINS},
        "data": {
            "items": n,
            "skipped": inputs.n_skipped,
            "failed": sum(p is None for p in inputs.pred),
            "with_human": len(have),
            "with_several_humans": sum(len(h) >= 2 for h in inputs.human),
            "reviewers": dict(sorted(reviewers.items())),
            "reviewed_in_workflow": len(inputs.reviewed),
            "human_set_is_selected": selected,
            "llm_label_counts": {lab: sum(p == lab for p in inputs.pred) for lab in labels}
            | {NO_LABEL: sum(p is None for p in inputs.pred)},
            "notes": list(inputs.notes),
        },
        "corrections": dict(inputs.correction_reasons),
    }
    t = [ref[i] for i in have]
    p = [inputs.pred[i] for i in have]
    agr = M.agreement(t, p, labels=labels, n_boot=n_boot, seed=seed, level=LEVEL)
    out["agreement"] = jsonable(agr)
    out["confusion"] = {
        "labels": [*labels, NO_LABEL],
        "counts": [list(r) for r in agr.confusion],
        "row_normalised": M.row_normalised(np.array(agr.confusion)).tolist(),
    }
    out["confusion_pairs"] = M.confusion_pairs(
        t, p, labels=labels, examples=[inputs.texts[i][:240] for i in have], top=8, n_examples=3
    )
    out["members"] = {
        m: M.agreement(t, [v[i] for i in have], labels=labels, n_boot=n_boot, seed=seed).accuracy.to_dict()
        for m, v in inputs.member_labels.items()
    }
    reviewed_here = [i for i in have if inputs.ids[i] in inputs.reviewed]
    out["data"]["workflow_changed_llm"] = sum(
        any(v != inputs.pred[i] for r, v in inputs.human[i].items() if r != "gold") for i in reviewed_here
    )

    multi = [h for h in inputs.human if len(h) >= 2]
    if multi:
        units = [list(h.values()) for h in multi]
        band = M.human_band(inputs.human, inputs.pred, n_boot=n_boot, seed=seed, level=LEVEL)
        out["humans"] = {
            "items": len(multi),
            "alpha": M.krippendorff_alpha(units, labels=labels, n_boot=n_boot, seed=seed, level=LEVEL).to_dict(),
            "coincidence": M.coincidence_matrix(units, labels=labels).tolist(),
            "band": jsonable(band),
        }
    out["calibration"] = _calibration(inputs, ref, n_boot=n_boot, seed=seed)
    out["audit"] = _audit(inputs, ref)

    # cost and quality
    correct = [ref[i] == inputs.pred[i] for i in have]
    methods, routing_method = _distinct_methods(inputs)
    routing_conf = inputs.confidences.get("confidence")
    conf_for_curve = {m: [inputs.confidences[m][i] for i in have] for m in methods}
    budget, budget_source = _review_budget(inputs, n)
    scaled = round(budget * len(have) / n)
    curve: dict[str, Any] = {
        "n": len(have),
        "budget_marker": scaled,
        "price_per_label": inputs.price_per_label,
        "routing_method": routing_method,
    }
    grid = _budgets(len(have), [scaled])
    for m, c in conf_for_curve.items():
        curve[m] = M.budget_curve(correct, c, budgets=grid, level=LEVEL)
    if not conf_for_curve:
        curve["random"] = M.budget_curve(correct, [None] * len(have), budgets=grid, level=LEVEL)
    out["budget_curve"] = curve

    audit = out["audit"] or {}
    if "llm_accuracy" in audit:
        llm_acc, reviewed_acc, source = audit["llm_accuracy"]["value"], audit["final_accuracy"]["value"], "audit"
    else:
        llm_acc = agr.accuracy.value
        route_by = [routing_conf[i] for i in have] if routing_conf else [None] * len(have)
        sim = M.budget_curve(correct, route_by, budgets=[scaled])
        reviewed_acc = sim["lowest_first"][0]
        source = "simulated on the human-labelled items, routing the lowest confidence first"
    out["cost"] = {
        "llm_cost": inputs.llm_cost,
        "tokens": dict(inputs.tokens),
        "price_per_label": inputs.price_per_label,
        "review_budget": budget,
        "review_budget_source": budget_source,
        "accuracy_source": source,
        "scenarios": M.cost_scenarios(
            n_items=n,
            llm_cost=inputs.llm_cost,
            price_per_label=inputs.price_per_label,
            review_budget=budget,
            llm_accuracy=llm_acc,
            reviewed_accuracy=reviewed_acc,
        ),
    }

    # how many audit items a given precision needs
    acc = min(max(llm_acc, 0.5), 0.99) if _finite(llm_acc) else 0.9  # p(1 − p) = 0 would say 1 item
    # disagreement rates from the audit when there is one (the human-labelled set may be a selected one)
    audited = [i for i in have if inputs.audit and inputs.ids[i] in inputs.audit.strata] or have
    t_a, p_a = [ref[i] for i in audited], [inputs.pred[i] for i in audited]
    true_share = np.array([sum(x == lab for x in t_a) / len(t_a) for lab in labels])
    flip = np.array([np.mean([(a == lab) != (b == lab) for a, b in zip(t_a, p_a, strict=True)]) for lab in labels])
    out["sample_size"] = {
        "accuracy": {
            f"±{hw:g}": M.audit_size_for_accuracy(expected_accuracy=acc, half_width=hw, population=n)
            for hw in (0.01, 0.02, 0.05)
        },
        "expected_accuracy": acc,
        "prevalence_pm_0.02": {
            lab: {
                "classical": M.audit_size_for_prevalence(prevalence=true_share[j], half_width=0.02, population=n),
                "ppi": M.audit_size_for_prevalence(
                    prevalence=true_share[j], half_width=0.02, population=n, disagreement_rate=max(flip[j], 1e-6)
                ),
            }
            for j, lab in enumerate(labels)
        },
    }
    return dict(jsonable(out))


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def _review_budget(inputs: EvalInputs, n: int) -> tuple[int, str]:
    if inputs.audit is not None and inputs.audit.queue_size:
        return inputs.audit.queue_size, "the review queue"
    if inputs.review_budget is not None:
        return min(inputs.review_budget, n), "routing.max_items / max_dollars"
    return max(1, round(0.1 * n)), "10% of items (no queue or routing budget in this run)"


# --- CLI ---------------------------------------------------------------------------------------------------


def evaluate_run(
    run_dir: Path, *, human_file: Path | None = None, out_dir: Path | None = None, n_boot: int = 1000, seed: int = 0
) -> tuple[Path, dict[str, Any]]:
    from labeler.evaluate.report import write_report

    inputs = gather(run_dir, human_file=human_file)
    metrics = build_metrics(inputs, n_boot=n_boot, seed=seed)
    out = out_dir or run_dir / "report"
    write_report(metrics, out)
    return out, metrics


def cmd_eval(args: argparse.Namespace) -> int:
    from labeler.evaluate.report import summary_sentences

    out, metrics = evaluate_run(args.run_dir, human_file=args.human, out_dir=args.out, n_boot=args.boot, seed=args.seed)
    for line in summary_sentences(metrics):
        print(line)
    print(f"report: {out / 'report.html'} (also report.md, metrics.json)")
    return 0


def register(sub: Any) -> None:
    """Add `labeler eval` to an argparse subparsers object."""
    help_ = "measure a run's labels against human labels; write a report with honest intervals"
    sp = sub.add_parser("eval", help=help_, description=help_)
    sp.add_argument("run_dir", type=Path)
    sp.add_argument("--human", type=Path, help="extra human labels: CSV/JSONL with columns id,label[,reviewer]")
    sp.add_argument("--out", type=Path, help="report folder (default: RUN_DIR/report)")
    sp.add_argument("--boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    sp.add_argument("--seed", type=int, default=0, help="seed for the bootstrap and tie-breaks")
    sp.set_defaults(fn=cmd_eval)
