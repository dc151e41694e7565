"""Measuring: the metrics dict (JSON-able) of one run's EvalInputs; the maths is labeler.evaluate.metrics,
imported lazily so that registering the command stays cheap. labeler.evaluate.report renders it."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from labeler.errors import LabelerError
from labeler.evaluate.gather import ECE_BINS, LEVEL, NO_LABEL, ROUTED, EvalInputs
from labeler.humans import decide


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
    from labeler.evaluate.audit import audit_accuracy

    a = inputs.audit
    if a is None or not a.strata:
        return None
    index = {i: n for n, i in enumerate(inputs.ids)}
    rows = [index[i] for i in a.strata if ref[index[i]] is not None]
    out = a.summary(with_answer=len(rows), reviewed=len(inputs.reviewed))
    if len(a.strata) > len(rows):
        out["note"] = (f"{len(a.strata) - len(rows)} audited items have no human label yet; the estimates assume "
                       "they are like the rest")
    if not rows:
        return out
    strata = [a.strata[inputs.ids[i]] for i in rows]
    acc = audit_accuracy([ref[i] == inputs.pred[i] for i in rows], strata, a.populations,
                         [inputs.ids[i] not in a.routed for i in rows], n_items=len(inputs.ids),
                         n_reviewed=len(inputs.reviewed), waiting=len(a.routed - inputs.reviewed), level=LEVEL)
    if acc.unbounded_waiting:
        out["note"] = f"{out.get('note', '')} {acc.waiting_note('accuracy')}".strip()
    prev = M.ppi_prevalence(
        inputs.pred,
        [ref[i] for i in rows],
        [inputs.pred[i] for i in rows],
        audit_strata=strata,
        populations=a.populations,
        labels=inputs.labels,
        level=LEVEL,
    )
    prevalence = jsonable(prev)
    # with one LLM label per stratum (the router's design) the correction term is the stratified estimate
    # itself: the two columns would be the same numbers under two names, so only one is kept
    same = all(all(abs(x["ppi"][k] - x["classical"][k]) < 1e-9 for k in ("value", "low", "high")) for x in prevalence)
    if same:
        for x in prevalence:
            x["ppi"] = None
    out.update(
        {
            "llm_accuracy": acc.all.to_dict() | {"effective_n": acc.n_eff},
            "unseen_accuracy": acc.unseen.to_dict() | {"effective_n": acc.n_eff_unseen,
                                                       "audited_in_domain": acc.audited_unseen},
            "final_accuracy": acc.final.to_dict() | {"waiting_for_review": acc.waiting},
            "prevalence": prevalence,
            "ppi_equals_stratified": same,
        }
    )
    return out


def _humans(inputs: EvalInputs, *, n_boot: int, seed: int) -> dict[str, Any] | None:
    """Krippendorff's alpha on every item with several humans, and the human band on those of them whose
    selection does not depend on the LLM: items the router queued as doubtful are left out when others
    remain (basis "audit": only audited items remain, weighted N_h/n_h; "independent": none was routed),
    else the band is on the doubtful items and says so (basis "selected")."""
    from labeler.evaluate import metrics as M

    labels = inputs.labels
    multi = [i for i, h in enumerate(inputs.human) if len(h) >= 2]
    if not multi:
        return None
    a = inputs.audit
    # items picked by active learning are chosen for being hard for the student: not independent either
    doubtful = ((a.routed | a.picked) - set(a.strata)) if a is not None else frozenset()
    fair = [i for i in multi if inputs.ids[i] not in doubtful]
    rows, basis, weights = fair or multi, "independent" if fair else "selected", None
    if fair and a is not None and all(inputs.ids[i] in a.strata for i in fair):
        basis = "audit"
        sampled = {h: sum(s == h for s in a.strata.values()) for h in a.populations}
        weights = [a.populations[h] / sampled[h] for h in (a.strata[inputs.ids[i]] for i in rows)]
    units = [list(inputs.human[i].values()) for i in multi]
    band = M.human_band(
        [inputs.human[i] for i in rows],
        [inputs.pred[i] for i in rows],
        weights=weights,
        n_boot=n_boot,
        seed=seed,
        level=LEVEL,
    )
    return {
        "items": len(multi),
        "alpha": M.krippendorff_alpha(units, labels=labels, n_boot=n_boot, seed=seed, level=LEVEL).to_dict(),
        "coincidence": M.coincidence_matrix(units, labels=labels).tolist(),
        "band": jsonable(band) | {"basis": basis, "left_out_as_doubtful": len(multi) - len(rows)},
    }


def _budgets(n: int, extra: Sequence[int]) -> list[int]:
    grid = np.unique(np.r_[np.linspace(0, n, min(n, 40) + 1).round().astype(int), [b for b in extra if 0 <= b <= n]])
    return [int(b) for b in grid]


def build_metrics(inputs: EvalInputs, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """All the numbers of the report, as a JSON-able dict (see report.py for how they are shown)."""
    from labeler.evaluate import metrics as M  # scipy and scikit-learn load only when evaluating

    labels = inputs.labels
    n = len(inputs.ids)
    # the human label of each item by labeler.humans' rule, as gathered (the final dataset uses the same)
    ref = list(inputs.reference) if inputs.reference else [decide(h).label for h in inputs.human]
    have = [i for i in range(n) if ref[i] is not None]
    if not have:
        raise LabelerError(
            "no human labels for this run's items: add a gold column to the input, review items, "
            "or pass --human FILE (columns id,label)"
        )
    reviewers = Counter(r for h in inputs.human for r in h)
    # routed (doubtful) or actively picked items among the human-labelled ones, when those are not the whole corpus
    routed = (inputs.audit.routed | inputs.audit.picked) if inputs.audit is not None else frozenset()
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

    humans = _humans(inputs, n_boot=n_boot, seed=seed)
    if humans:
        out["humans"] = humans
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

    # how many audit items a given precision needs, planned at the conservative end of what was measured
    # (a pilot that saw no error must not plan for none: see metrics.conservative_share)
    pilot_acc = audit["llm_accuracy"]["effective_n"] if "llm_accuracy" in audit else len(have)
    acc = M.conservative_share(llm_acc, pilot_acc) if _finite(llm_acc) else 0.5
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
        "measured_accuracy": llm_acc,
        "pilot_items": len(audited),
        "prevalence_pm_0.02": {
            lab: {
                "classical": M.audit_size_for_prevalence(
                    prevalence=true_share[j], half_width=0.02, population=n, pilot_n=len(audited)
                ),
                "ppi": M.audit_size_for_prevalence(
                    prevalence=true_share[j],
                    half_width=0.02,
                    population=n,
                    disagreement_rate=flip[j],
                    pilot_n=len(audited),
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
