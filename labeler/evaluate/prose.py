"""The report's plain-language sentences, computed from the metrics dict (labeler.evaluate.measure). Plain
text with control characters made visible (escape.visible): fit for a terminal and for metrics.json; the
renderers escape it further for Markdown and HTML."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from labeler.evaluate.escape import visible
from labeler.evaluate.formatting import ci, est, excludes, ok, pct


def summary_sentences(m: Mapping[str, Any]) -> list[str]:
    """The 'what this shows' paragraph, sentence by sentence, computed from the numbers."""
    out: list[str] = []
    a = m["agreement"]
    level = pct(m["settings"]["level"], 0)
    out.append(
        f"On {a['n']:,} items with a human label, the LLM's label matches the human reference "
        f"{pct(a['accuracy']['value'])} of the time ({level} interval {ci(a['accuracy'])}); "
        f"Cohen's κ = {est(a['kappa'], as_pct=False)}, macro F1 = {est(a['f1_macro'], as_pct=False)}."
    )
    if m["data"].get("human_set_is_selected"):
        out.append(
            "These items include ones routed to review because they looked doubtful (or picked by active "
            "learning), so they are harder than average: the audit estimates below speak for the whole corpus."
        )
    over = [c for c in a["per_class"] if excludes(c["over_prediction"], 1.0)]
    for c in sorted(over, key=lambda c: -abs(math.log(c["over_prediction"]["value"] or 1e-9))):
        o = c["over_prediction"]
        word = "over-predicts" if o["value"] > 1 else "under-predicts"
        out.append(
            f"It {word} “{c['label']}”: {c['predicted']:,} predicted vs {c['support']:,} true, "
            f"a ratio of {est(o, as_pct=False)} whose interval excludes 1."
        )
    if not over:
        out.append("No label is clearly over- or under-predicted: every over-prediction interval includes 1.")
    pairs = m.get("confusion_pairs") or []
    if pairs:
        p = pairs[0]
        out.append(
            f"The most frequent error is “{p['true']}” labelled as “{p['predicted']}” ({p['count']:,} items, "
            f"{pct(p['share_of_true'])} of “{p['true']}”)."
        )
    failed = m["data"]["failed"]
    if failed:
        out.append(f"{failed} items got no label from the LLM (failed) and count as errors.")
    cal = m.get("calibration") or {}
    if cal:
        best = min(cal.values(), key=lambda c: c["ece"]["value"] if ok(c["ece"]["value"]) else 9)
        auroc = best.get("auroc")
        signal = (
            f"; AUROC {est(auroc, as_pct=False)} for telling right labels from wrong ones (0.5 = no signal)"
            if auroc
            else ""
        )
        which = f"The best-calibrated confidence, {best['name']}," if len(cal) > 1 else f"Confidence ({best['name']})"
        out.append(
            f"{which} is {calibration_direction(best)}: mean confidence {pct(best['mean_confidence'])} vs accuracy "
            f"{pct(best['accuracy'])}, ECE {est(best['ece'], as_pct=False, digits=3)}{signal}."
        )
    out.extend(_budget_sentence(m))
    hum = m.get("humans")
    if hum:
        out.append(
            f"Among humans, Krippendorff's α = {est(hum['alpha'], as_pct=False)} on the {hum['items']:,} items "
            "with several human labels."
        )
    if hum and hum.get("band") and "verdict" in hum["band"]:
        b = hum["band"]
        verdict = {
            "inside": "inside the human disagreement band (the difference interval includes 0)",
            "above": "above the band (it agrees with the humans more than they agree with each other)",
            "below": "outside the band, below it (it agrees with the humans less than they agree with each other)",
        }[b["verdict"]]
        out.append(
            f"{_upper_first(band_items(b))}, the LLM agrees with the other humans' majority "
            f"{pct(b['llm_vs_others']['value'])} of the time vs {pct(b['human_loo']['value'])} for a held-out "
            f"human, so it is {verdict}."
        )
    au = m.get("audit") or {}
    if "unseen_accuracy" in au:
        out.append(
            f"From the random audit ({au['audited_with_label']:,} items with a human label): the labels no human saw "
            f"are about {est(au['unseen_accuracy'])} accurate, and the final dataset (human label where reviewed, "
            f"LLM elsewhere) about {est(au['final_accuracy'])}."
        )
    return [visible(s) for s in out]


def band_items(band: Mapping[str, Any]) -> str:
    """Which items the human band was measured on, and what that makes the verdict speak for."""
    n = band["n_items"]
    left_out = band.get("left_out_as_doubtful", 0)
    but = f"; {left_out:,} items routed as doubtful are left out" if left_out else ""
    basis = band.get("basis", "independent")
    if basis == "audit":
        return (
            f"on the {n:,} audited items with several humans (a random sample, so the verdict speaks for the "
            f"corpus{but})"
        )
    if basis == "selected":
        return (
            f"on the {n:,} items with several humans, which the router chose as doubtful (low confidence), so "
            "the verdict describes those hard items, not the corpus"
        )
    return f"on the {n:,} items with several humans (none routed as doubtful{but})"


def _upper_first(s: str) -> str:
    return s[:1].upper() + s[1:]


def calibration_direction(c: Mapping[str, Any]) -> str:
    """'well calibrated', 'over-confident', 'under-confident' or both, from the reliability bins: which side
    of the diagonal the ECE comes from (70% or more of it on one side names that side)."""
    n = max(c["n"], 1)
    over = sum(b["count"] / n * max(b["confidence"] - b["accuracy"], 0) for b in c["bins"] if b["count"])
    under = sum(b["count"] / n * max(b["accuracy"] - b["confidence"], 0) for b in c["bins"] if b["count"])
    if over + under < 0.03:
        return "well calibrated"
    if over >= 0.7 * (over + under):
        return "over-confident"
    if under >= 0.7 * (over + under):
        return "under-confident"
    high = [b for b in c["bins"] if b["count"] and b["low"] >= 0.5]
    gap = sum(b["count"] * (b["confidence"] - b["accuracy"]) for b in high)
    return (
        "over-confident at high confidence and under-confident below"
        if gap > 0
        else "under-confident at high confidence and over-confident below"
    )


def _budget_sentence(m: Mapping[str, Any]) -> list[str]:
    curve = m.get("budget_curve") or {}
    methods = [k for k, v in curve.items() if isinstance(v, dict) and "lowest_first" in v]
    if not methods or curve["n"] == 0:
        return []
    key = curve.get("routing_method") if curve.get("routing_method") in methods else methods[0]
    c = curve[key]
    b = curve["budget_marker"]
    if b not in c["budget"] or b == 0:
        return []
    j = c["budget"].index(b)
    return [
        f"Sending the {b:,} lowest-confidence of these {curve['n']:,} items ({pct(b / curve['n'], 0)}) to humans would "
        f"take accuracy from {pct(c['lowest_first'][0])} to {pct(c['lowest_first'][j])}, vs {pct(c['random'][j])} "
        f"for the same number picked at random."
    ]
