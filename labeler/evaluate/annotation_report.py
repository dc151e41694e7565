"""The report of a multi-label or span run: metrics.json, PNG plots, report.md and a self-contained report.html,
rendered as the single-label report is (labeler.evaluate.report's Jinja2 environment: every printed value
escaped for its format, the template's own text as is) from templates/annotations_body.j2, which includes
the task type's own section (multi_label.j2, spans.j2). Everything is read from the metrics dict of
annotation_metrics.build_annotation_metrics, so the report can be rebuilt from metrics.json alone."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from labeler.evaluate import annotation_plots, annotators
from labeler.evaluate.annotation_plots import WORDS, primary
from labeler.evaluate.escape import visible
from labeler.evaluate.formatting import ci, est, ok, pct
from labeler.evaluate.report import _environment, write_files


def _multi_label(ev: Mapping[str, Any], level: str) -> tuple[list[str], list[Mapping[str, Any]]]:
    return [
        f"On {ev['n']:,} items with a human annotation, micro F1 = {est(ev['f1_micro'], as_pct=False)} and "
        f"macro F1 = {est(ev['f1_macro'], as_pct=False)} ({level} intervals); the label set is exactly the "
        f"human one on {pct(ev['subset_accuracy']['value'])} of items (interval {ci(ev['subset_accuracy'])}), "
        f"Hamming loss {est(ev['hamming_loss'], as_pct=False, digits=3)}.",
        f"The LLM gives {est(ev['cardinality_llm'], as_pct=False)} labels per item, humans "
        f"{est(ev['cardinality_human'], as_pct=False)}.",
    ], ev["per_class"]


def _spans(ev: Mapping[str, Any], level: str) -> tuple[list[str], list[Mapping[str, Any]]]:
    c = {k: f"{v['value']:.0f}" for k, v in ev["errors"].items()}
    return [
        f"On {ev['n']:,} items with a human annotation, exact-match F1 over all spans = "
        f"{est(ev['exact']['per_class'][-1]['f1'], as_pct=False)}, partial-match F1 = "
        f"{est(ev['partial']['per_class'][-1]['f1'], as_pct=False)} ({level} intervals).",
        f"Error structure: {c['correct']} correct, {c['type_error']} with the wrong type, "
        f"{c['boundary_error']} with wrong boundaries, {c['boundary_and_type_error']} with both wrong, "
        f"{c['missed']} missed, {c['spurious']} spurious.",
    ], ev["exact"]["per_class"][:-1]


# per task type: how its `agreement` of two annotations is called
AGREEMENT = {"multi_label": "the Jaccard similarity of the two label sets", "spans": "the F1 of exact span matches"}
# per task type: its opening sentences and the per-class rows whose over-prediction the summary names
_OPENING = {"multi_label": _multi_label, "spans": _spans}


def summary_sentences(m: Mapping[str, Any]) -> list[str]:
    """The 'what this shows' paragraph of a multi-label or span report, from its numbers."""
    out, rows = _OPENING[m["task_type"]](m["evaluation"], pct(m["settings"]["level"], 0))
    ratios = [(r["name"], r["over_prediction"]) for r in rows]
    over = [name for name, e in ratios if ok(e.get("low")) and e["low"] > 1]
    under = [name for name, e in ratios if ok(e.get("high")) and e["high"] < 1]
    if over:
        out.append(f"Over-predicted (interval above 1): {', '.join(over)}.")
    if under:
        out.append(f"Under-predicted (interval below 1): {', '.join(under)}.")
    if not over and not under:
        out.append(f"No {WORDS[m['task_type']][0]} is over- or under-predicted beyond chance.")
    if m["data"].get("human_set_is_selected"):
        out.append("The human-annotated items include ones routed to review as doubtful: see the audit section for "
                   "the corpus.")
    return [visible(s) for s in out]


def render(m: Mapping[str, Any], images: Mapping[str, str], fmt: str,
           image_data: Mapping[str, bytes] | None = None) -> str:
    """report.md (fmt "md") or report.html (fmt "html") of a multi-label or span metrics dict."""
    reviewers = ", ".join(f"{r} ({n})" for r, n in m["data"]["reviewers"].items()) or "none"
    what, element = WORDS[m["task_type"]]
    text = _environment(fmt).get_template(f"annotations.{fmt}.j2").render(
        m=m,
        images=dict(images),
        image_data={k: base64.b64encode(v).decode("ascii") for k, v in (image_data or {}).items()},
        summary_text=" ".join(m.get("summary") or summary_sentences(m)),
        lv=pct(m["settings"]["level"], 0),
        reviewers=reviewers,
        what=what,
        element=element,
        agreement_measure=AGREEMENT[m["task_type"]],
        primary=lambda ev: primary(m["task_type"], ev),
    )
    text = annotators.insert_section(text, m, fmt)  # multi-label: LLM members and reviewers side by side
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def write_report(metrics: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write metrics.json, the PNGs, report.md and report.html to out_dir. Returns the written paths."""
    return write_files(metrics, out_dir, summary=summary_sentences, draw=annotation_plots.draw_all, render=render)
