"""The evaluation report: metrics.json, PNG plots, report.md and a self-contained report.html.

The report is built once as a list of blocks (heading, paragraph, table, image) and rendered twice, to
Markdown and to HTML with the PNGs inlined as base64. Plots use matplotlib's Agg canvas through
`matplotlib.figure.Figure` (no pyplot, no global state). Everything is read from the metrics dict of
labeler.evaluate.gather.build_metrics, so a report can be rebuilt from metrics.json alone.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

# --- formatting ----------------------------------------------------------------------------------------------


def _ok(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def pct(x: Any, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%" if _ok(x) else "n/a"


def num(x: Any, digits: int = 2) -> str:
    return f"{x:.{digits}f}" if _ok(x) else "n/a"


def ci(e: Mapping[str, Any], *, as_pct: bool = True, digits: int | None = None) -> str:
    """'81.0–87.3%' or '0.65–0.77'; '?' for an end that is undefined."""
    d = (1 if as_pct else 2) if digits is None else digits
    scale = 100 if as_pct else 1
    ends = [scale * e[k] if _ok(e.get(k)) else None for k in ("low", "high")]
    lo, hi = (num(x, d).replace("-", "−") if x is not None else "?" for x in ends)
    sep = " to " if any(x is not None and x < 0 for x in ends) else "–"
    return f"{lo}{sep}{hi}" + ("%" if as_pct else "")


def est(e: Mapping[str, Any] | None, *, as_pct: bool = True, digits: int | None = None) -> str:
    """'84.2% (81.0–87.3%)' or '0.71 (0.65–0.77)'; 'n/a' when undefined."""
    if not e or not _ok(e.get("value")):
        return "n/a"
    d = (1 if as_pct else 2) if digits is None else digits
    value = (pct(e["value"], d) if as_pct else num(e["value"], d)).replace("-", "−")
    return f"{value} ({ci(e, as_pct=as_pct, digits=d)})"


# --- plain-language summary -----------------------------------------------------------------------------------


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
            "These items include ones routed to review because they looked doubtful, so they are harder than "
            "average: the audit estimates below speak for the whole corpus."
        )
    over = [c for c in a["per_class"] if _excl(c["over_prediction"], 1.0)]
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
        best = min(cal.values(), key=lambda c: c["ece"]["value"] if _ok(c["ece"]["value"]) else 9)
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
    if hum and hum.get("band"):
        b = hum["band"]
        verdict = {
            "inside": "inside the human disagreement band (the difference interval includes 0)",
            "above": "above the band (it agrees with the humans more than they agree with each other)",
            "below": "outside the band, below it (it agrees with the humans less than they agree with each other)",
        }[b["verdict"]]
        out.append(
            f"On {hum['items']:,} items with several humans, Krippendorff's α = {est(hum['alpha'], as_pct=False)}; "
            f"the LLM agrees with the other humans' majority {pct(b['llm_vs_others']['value'])} of the time vs "
            f"{pct(b['human_loo']['value'])} for a held-out human, so it is {verdict}."
        )
    au = m.get("audit") or {}
    if "unseen_accuracy" in au:
        out.append(
            f"From the random audit ({au['audited_with_label']:,} items with a human label): the labels no human saw "
            f"are about {est(au['unseen_accuracy'])} accurate, and the final dataset (human label where reviewed, "
            f"LLM elsewhere) about {est(au['final_accuracy'])}."
        )
    return out


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


def _excl(e: Mapping[str, Any], x: float) -> bool:
    return _ok(e.get("low")) and _ok(e.get("high")) and (e["low"] > x or e["high"] < x)


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


# --- plots ----------------------------------------------------------------------------------------------------


def _save(fig: Figure, path: Path) -> str:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path.name


def _heatmap(
    ax: Any, mat: np.ndarray, counts: np.ndarray, rows: Sequence[str], cols: Sequence[str], title: str
) -> None:
    ax.imshow(mat, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(cols)), labels=cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), labels=rows)
    for i in range(len(rows)):
        for j in range(len(cols)):
            if counts[i, j]:
                colour = "white" if mat[i, j] > 0.6 else "black"
                ax.text(
                    j,
                    i,
                    f"{counts[i, j]:.0f}\n{100 * mat[i, j]:.0f}%",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color=colour,
                )
    ax.set_title(title, fontsize=10)


def plot_confusion(m: Mapping[str, Any], path: Path) -> str:
    labels = m["labels"]
    counts = np.array(m["confusion"]["counts"], dtype=float)[: len(labels)]
    cols = list(m["confusion"]["labels"])
    if not counts[:, -1].any():
        counts, cols = counts[:, :-1], cols[:-1]
    rows_sum = counts.sum(1, keepdims=True)
    norm = np.divide(counts, rows_sum, out=np.zeros_like(counts), where=rows_sum > 0)
    hum = m.get("humans")
    panels = 2 if hum else 1
    size = max(3.5, 0.6 * len(cols) + 1.5)
    fig = Figure(figsize=(size * panels + 0.5, size))
    ax = fig.add_subplot(1, panels, 1)
    _heatmap(ax, norm, counts, labels, cols, "LLM vs human reference\n(row = human, share of row)")
    ax.set_xlabel("LLM label")
    ax.set_ylabel("human label")
    if hum:
        co = np.array(hum["coincidence"], dtype=float)
        s = co.sum(1, keepdims=True)
        ax2 = fig.add_subplot(1, 2, 2)
        _heatmap(
            ax2,
            np.divide(co, s, out=np.zeros_like(co), where=s > 0),
            co,
            labels,
            labels,
            "human vs human\n(coincidences, share of row)",
        )
        ax2.set_xlabel("another human's label")
    fig.tight_layout()
    return _save(fig, path)


def plot_overprediction(m: Mapping[str, Any], path: Path) -> str:
    cls = [c for c in m["agreement"]["per_class"] if _ok(c["over_prediction"]["value"])]
    fig = Figure(figsize=(6.5, 0.45 * len(cls) + 1.5))
    ax = fig.add_subplot()
    y = np.arange(len(cls))
    vals = np.array([c["over_prediction"]["value"] for c in cls])
    lo = np.array(
        [c["over_prediction"]["low"] if _ok(c["over_prediction"]["low"]) else v for c, v in zip(cls, vals, strict=True)]
    )
    hi = np.array(
        [
            c["over_prediction"]["high"] if _ok(c["over_prediction"]["high"]) else v
            for c, v in zip(cls, vals, strict=True)
        ]
    )
    colours = ["#c0392b" if lo_ > 1 else "#2e6da4" if hi_ < 1 else "#999999" for lo_, hi_ in zip(lo, hi, strict=True)]
    ax.barh(y, vals, color=colours, xerr=np.vstack([vals - lo, hi - vals]), capsize=4)
    ax.axvline(1.0, color="black", lw=1)
    ax.set_yticks(y, labels=[c["label"] for c in cls])
    ax.invert_yaxis()
    ax.set_xlabel("#predicted / #true  (red: over-predicted, blue: under-predicted, interval excludes 1)")
    ax.set_title("Over-prediction ratio per label, 95% bootstrap interval", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_reliability(m: Mapping[str, Any], path: Path) -> str:
    cal = m["calibration"]
    fig = Figure(figsize=(3.6 * len(cal) + 0.4, 3.8))
    for i, c in enumerate(cal.values(), 1):
        ax = fig.add_subplot(1, len(cal), i)
        bins = c["bins"]
        centres = [(b["low"] + b["high"]) / 2 for b in bins]
        acc = [b["accuracy"] if b["count"] else 0 for b in bins]
        ax.bar(centres, acc, width=0.1, edgecolor="black", color="#7fa7d9", label="accuracy")
        pts = [(b["confidence"], b["accuracy"]) for b in bins if b["count"]]
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
        if pts:
            ax.plot(*zip(*pts, strict=True), "o", color="#c0392b", ms=4, label="bin: (mean confidence, accuracy)")
        for b, x in zip(bins, centres, strict=True):
            if b["count"]:
                ax.text(x, 0.02, str(b["count"]), ha="center", fontsize=6, rotation=90)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("share correct")
        ax.set_title(f"{c['name']}\nECE {num(c['ece']['value'], 3)}, n={c['n']}", fontsize=9)
        if i == 1:
            ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return _save(fig, path)


def plot_budget(m: Mapping[str, Any], path: Path) -> str:
    curve = m["budget_curve"]
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.add_subplot()
    n = max(curve["n"], 1)
    random_drawn = False
    for key, c in curve.items():
        if not isinstance(c, dict) or "lowest_first" not in c:
            continue
        x = 100 * np.array(c["budget"]) / n
        name = (m.get("calibration", {}).get(key) or {}).get("name", key)
        if key != "random":
            ax.plot(x, 100 * np.array(c["lowest_first"]), lw=2, label=f"lowest {name} first")
        if not random_drawn:
            ax.plot(x, 100 * np.array(c["random"]), "k--", lw=1, label="random (expected)")
            ax.fill_between(
                x,
                100 * np.array(c["random_low"]),
                100 * np.array(c["random_high"]),
                color="grey",
                alpha=0.25,
                label="random, 95% band",
            )
            random_drawn = True
    if curve.get("budget_marker"):
        ax.axvline(100 * curve["budget_marker"] / n, color="#c0392b", lw=1, ls=":", label="review budget")
    ax.set_xlabel(f"share of the {curve['n']} human-labelled items reviewed (%)")
    ax.set_ylabel("final accuracy (%)")
    ax.set_title("Accuracy vs human review budget (reviewed item = human label)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


# --- document model -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    kind: str  # "h1", "h2", "h3", "p", "table", "img", "list"
    text: str = ""
    rows: tuple[tuple[str, ...], ...] = ()  # table: first row is the header; list: one item per row


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Block:
    return Block("table", rows=(tuple(header), *(tuple(str(c) for c in r) for r in rows)))


def render_md(blocks: Sequence[Block]) -> str:
    out = []
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            out.append("#" * int(b.kind[1]) + " " + b.text)
        elif b.kind == "p":
            out.append(b.text)
        elif b.kind == "list":
            out.append("\n".join(f"- {r[0]}" for r in b.rows))
        elif b.kind == "img":
            out.append(f"![{b.rows[0][0] if b.rows else b.text}]({b.text})")
        elif b.kind == "table":
            esc = [[c.replace("|", "\\|").replace("\n", " ") for c in r] for r in b.rows]
            out.append("| " + " | ".join(esc[0]) + " |")
            out.append("|" + "---|" * len(esc[0]))
            out.extend("| " + " | ".join(r) + " |" for r in esc[1:])
        out.append("")
    return "\n".join(out)


_CSS = """body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222;
line-height:1.45}table{border-collapse:collapse;margin:.5em 0 1em}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:.9em;text-align:left}
th{background:#f1f1f1}img{max-width:100%}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
.summary{background:#f6f8fa;border-left:4px solid #2e6da4;padding:.6em 1em}"""


def render_html(blocks: Sequence[Block], images: Mapping[str, bytes], title: str) -> str:
    out = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
    ]
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            out.append(f"<{b.kind}>{html.escape(b.text)}</{b.kind}>")
        elif b.kind == "p":
            cls = " class='summary'" if b.rows == (("summary",),) else ""
            out.append(f"<p{cls}>{html.escape(b.text)}</p>")
        elif b.kind == "list":
            out.append("<ul>" + "".join(f"<li>{html.escape(r[0])}</li>" for r in b.rows) + "</ul>")
        elif b.kind == "img":
            data = base64.b64encode(images[b.text]).decode("ascii")
            out.append(f"<p><img alt='{html.escape(b.text)}' src='data:image/png;base64,{data}'></p>")
        elif b.kind == "table":
            head = "".join(f"<th>{html.escape(c)}</th>" for c in b.rows[0])
            body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in b.rows[1:])
            out.append(f"<table><tr>{head}</tr>{body}</table>")
    out.append("</body></html>")
    return "\n".join(out)


# --- the report -----------------------------------------------------------------------------------------------


def build_blocks(m: Mapping[str, Any], images: Mapping[str, str]) -> list[Block]:
    """The report's content. `images` maps a plot's role (confusion, overprediction, reliability, budget) to
    its file name, for the plots that were drawn."""
    a, d = m["agreement"], m["data"]
    lv = pct(m["settings"]["level"], 0)
    B: list[Block] = [Block("h1", f"Evaluation of run {m['run_id']}"), Block("h2", "What this shows")]
    B.append(Block("p", " ".join(summary_sentences(m)), rows=(("summary",),)))

    B.append(Block("h2", "Data"))
    reviewers = ", ".join(f"{r} ({n})" for r, n in d["reviewers"].items()) or "none"
    facts = [
        f"{d['items']} items labelled by the LLM ({d['failed']} failed, no label); "
        f"{d['skipped']} skipped (empty text).",
        f"{d['with_human']} items have a human label; {d['with_several_humans']} have several. "
        f"Labels per reviewer: {reviewers}.",
        "Reference label of an item = majority of its human labels (gold breaks ties, else label order).",
        f"{d['reviewed_in_workflow']} items were reviewed in the workflow; the reviewer changed the LLM's label "
        f"on {d.get('workflow_changed_llm', 0)} of them.",
        *d["notes"],
    ]
    if d["reviewed_in_workflow"]:
        facts.append(
            "Reviewers who were shown the LLM's suggestion (review.show_suggestion) lean towards it, so agreement "
            "with workflow reviews can be optimistic; gold labels or an independent --human file are not affected."
        )
    B.append(Block("list", rows=tuple((x,) for x in facts)))
    if d["human_set_is_selected"]:
        B.append(
            Block(
                "p",
                "Caution: the human-labelled items were partly chosen by the router (doubtful items), so "
                "the agreement figures below describe those items, not the corpus. The audit section estimates "
                "the corpus from the random audit sample.",
            )
        )

    B.append(Block("h2", "Agreement with the human reference"))
    B.append(
        Block(
            "p",
            f"Intervals are {lv} bootstrap percentile intervals over items ({m['settings']['n_boot']} "
            f"resamples, seed {m['settings']['seed']}): they cover sampling noise in which items were checked, "
            "not errors in the human labels themselves."
            + (" With fewer than 30 items they are too narrow; treat them as rough." if a["n"] < 30 else ""),
        )
    )
    B.append(
        _table(
            ["metric", f"value ({lv} interval)"],
            [
                ["accuracy", est(a["accuracy"])],
                ["F1 macro", est(a["f1_macro"], as_pct=False)],
                ["F1 micro", est(a["f1_micro"], as_pct=False)],
                ["F1 weighted", est(a["f1_weighted"], as_pct=False)],
                ["Cohen's κ (LLM vs reference)", est(a["kappa"], as_pct=False)],
                *[[f"accuracy of member {k}", est(v)] for k, v in (m.get("members") or {}).items()],
            ],
        )
    )
    B.append(Block("h3", "Per label"))
    B.append(
        Block(
            "p",
            "Over-prediction ratio = number of items the LLM gave the label / number of items humans gave "
            "it. Above 1 the LLM uses the label too often; an interval that excludes 1 means the bias is "
            "unlikely to be chance. FP = the LLM gave the label wrongly, FN = it missed it.",
        )
    )
    B.append(
        _table(
            ["label", "true", "predicted", "over-prediction", "precision", "recall", "F1", "FP", "FN"],
            [
                [
                    c["label"],
                    c["support"],
                    c["predicted"],
                    est(c["over_prediction"], as_pct=False),
                    est(c["precision"], as_pct=False),
                    est(c["recall"], as_pct=False),
                    est(c["f1"], as_pct=False),
                    est(c["false_positives"], as_pct=False, digits=0),
                    est(c["false_negatives"], as_pct=False, digits=0),
                ]
                for c in a["per_class"]
            ],
        )
    )
    if "overprediction" in images:
        B.append(Block("img", images["overprediction"]))

    B.append(Block("h3", "Confusions"))
    if "confusion" in images:
        B.append(Block("img", images["confusion"]))
    pairs = m.get("confusion_pairs") or []
    if pairs:
        B.append(
            _table(
                ["human label", "LLM label", "items", "share of human label", "examples"],
                [
                    [
                        p["true"],
                        p["predicted"],
                        p["count"],
                        pct(p["share_of_true"]),
                        " ‖ ".join(_short(x) for x in p["examples"]),
                    ]
                    for p in pairs
                ],
            )
        )
    else:
        B.append(Block("p", "No errors on the human-labelled items."))

    hum = m.get("humans")
    if hum:
        B.append(Block("h2", "Humans among themselves"))
        band = hum.get("band") or {}
        rows = [["Krippendorff's α (nominal) among humans", est(hum["alpha"], as_pct=False)]]
        if band:
            rows += [
                ["held-out human agrees with the other humans' majority", est(band["human_loo"])],
                ["LLM agrees with that same majority", est(band["llm_vs_others"])],
                ["difference, LLM − human (paired)", est(band["difference"])],
                ["LLM agrees with the majority of all humans", est(band["llm_vs_majority"])],
                *[[f"reviewer {r}: agrees with the others' majority", pct(v)] for r, v in band["per_reviewer"].items()],
            ]
        B.append(_table(["measure", f"value ({lv} interval)"], rows))
        B.append(
            Block(
                "p",
                "α = 1 − (n − 1)·Σ_{c≠k} o_ck / Σ_{c≠k} n_c·n_k, from the coincidence matrix o of the "
                "human labels (items with one human do not count). The band compares like with like: each "
                "human is held out in turn and both that human and the LLM are scored against the majority of "
                "the remaining humans (ties count 1/#tied). Verdict: " + str(band.get("verdict", "n/a")) + ".",
            )
        )

    cal = m.get("calibration") or {}
    B.append(Block("h2", "Calibration of confidence"))
    if cal:
        B.append(
            Block(
                "p",
                "ECE = Σ_b |B_b|/n · |acc(B_b) − conf(B_b)| over 10 equal-width bins of the top-label "
                "confidence (acc = share correct, conf = mean confidence in bin b). Brier = mean (confidence − "
                "correct)²; multiclass Brier = mean Σ_k (p_k − 1[y = k])² over the full distribution. AUROC: how "
                "well confidence separates right from wrong labels (0.5 = no better than chance).",
            )
        )
        B.append(
            _table(
                ["method", "n", "accuracy", "mean confidence", "ECE", "Brier", "Brier (multiclass)", "AUROC"],
                [
                    [
                        c["name"],
                        c["n"],
                        pct(c["accuracy"]),
                        pct(c["mean_confidence"]),
                        est(c["ece"], as_pct=False, digits=3),
                        est(c["brier"], as_pct=False, digits=3),
                        est(c["brier_multiclass"], as_pct=False, digits=3),
                        est(c["auroc"], as_pct=False),
                    ]
                    for c in cal.values()
                ],
            )
        )
        if "reliability" in images:
            B.append(Block("img", images["reliability"]))
    else:
        B.append(Block("p", "No confidence scores on the human-labelled items."))

    B.extend(_audit_blocks(m, lv))
    B.extend(_cost_blocks(m, images))
    B.append(Block("h2", "How many audit items are enough"))
    ss = m["sample_size"]
    B.append(
        Block(
            "p",
            f"Normal approximation, n = z²·p(1 − p)/h² with the finite-population correction, at the "
            f"expected accuracy {pct(ss['expected_accuracy'])}: "
            + ", ".join(f"{k} → {v} items" for k, v in ss["accuracy"].items())
            + ". For a label's prevalence to ±2 points, the classical estimate (audit alone) and the "
            "prediction-powered one (variance = share of items where human and LLM disagree about the label):",
        )
    )
    B.append(
        _table(
            ["label", "classical", "prediction-powered"],
            [[k, v["classical"], v["ppi"]] for k, v in ss["prevalence_pm_0.02"].items()],
        )
    )
    if m.get("corrections"):
        B.append(Block("h2", "Why reviewers corrected labels"))
        B.append(_table(["reason", "count"], sorted(m["corrections"].items(), key=lambda kv: -kv[1])))
    return B


def _short(text: str, n: int = 120) -> str:
    t = " ".join(str(text).split())
    return t if len(t) <= n else t[: n - 1] + "…"


def _audit_blocks(m: Mapping[str, Any], lv: str) -> list[Block]:
    B = [Block("h2", "Estimates for the whole corpus from the random audit")]
    au = m.get("audit")
    if not au:
        B.append(
            Block(
                "p",
                "This run has no random audit, so there is no design-based estimate for the items no "
                "human saw. Set routing.audit_fraction (0.05–0.10) so the review queue includes a random sample.",
            )
        )
        return B
    B.append(
        Block(
            "p",
            f"{au['audited']} items were drawn at random for the audit ({au['audited_with_label']} have a "
            f"human label), in {len(au['strata'])} strata; {au['routed']} items were routed to review for other "
            "reasons. Each audited item stands for N_h/n_h items of its stratum (stratified, Hájek estimator); "
            "accuracy intervals are Wilson intervals at the effective sample size. " + au.get("note", ""),
        )
    )
    if "unseen_accuracy" not in au:
        return B
    B.append(
        _table(
            ["estimate", f"value ({lv} interval)"],
            [
                ["LLM accuracy over the whole corpus", est(au["llm_accuracy"])],
                ["accuracy of the labels no human saw (items not routed to review)", est(au["unseen_accuracy"])],
                [
                    f"final dataset: human label on the {au['reviewed']} reviewed items, LLM elsewhere"
                    + (
                        f" ({w} routed items still wait for review)"
                        if (w := au["final_accuracy"].get("waiting_for_review"))
                        else ""
                    ),
                    est(au["final_accuracy"]),
                ],
            ],
        )
    )
    B.append(
        Block(
            "p",
            "Corpus prevalence per label. Prediction-powered: θ_k = mean over all items of 1[LLM = k] + "
            "the audit-weighted mean of (1[human = k] − 1[LLM = k]), with a CLT interval; it corrects the LLM's "
            "count for its measured error and is usually tighter than the audit alone.",
        )
    )
    B.append(
        _table(
            ["label", "LLM share", "audit alone", "prediction-powered"],
            [[p["label"], pct(p["llm"]), est(p["classical"]), est(p["ppi"])] for p in au["prevalence"]],
        )
    )
    return B


def _cost_blocks(m: Mapping[str, Any], images: Mapping[str, str]) -> list[Block]:
    c = m["cost"]
    B = [Block("h2", "Cost and quality")]
    B.append(
        Block(
            "p",
            f"LLM cost = ${c['llm_cost']:.4f} for {c['tokens'].get('input', 0):,} input and "
            f"{c['tokens'].get('output', 0):,} output tokens (actual usage × configured prices). Human labels at "
            f"${c['price_per_label']:.2f} each. "
            f"Review budget: {c['review_budget']} items ({c['review_budget_source']}). "
            f"Accuracies: {c['accuracy_source']}; all-human accuracy is 1 by definition (humans are the reference).",
        )
    )
    B.append(
        _table(
            ["scenario", "human labels", "cost", "accuracy", "cost per label", "cost per accuracy point"],
            [
                [
                    s["scenario"],
                    s["human_labels"],
                    f"${s['cost']:.2f}",
                    pct(s["accuracy"]),
                    f"${s['cost_per_label']:.4f}" if _ok(s["cost_per_label"]) else "n/a",
                    f"${s['cost_per_accuracy_point']:.4f}" if _ok(s["cost_per_accuracy_point"]) else "n/a",
                ]
                for s in c["scenarios"]
            ],
        )
    )
    if "budget" in images:
        B.append(
            Block(
                "p",
                "Simulated on the human-labelled items: reviewing an item replaces its LLM label by the "
                "human one. Lowest confidence first (ties in random order, so the curve is their expectation) "
                "vs random routing with its 95% hypergeometric band.",
            )
        )
        B.append(Block("img", images["budget"]))
    return B


def write_report(metrics: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write metrics.json, the PNGs, report.md and report.html to out_dir. Returns the written paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    m = dict(metrics)
    m["summary"] = summary_sentences(m)
    (out_dir / "metrics.json").write_text(
        json.dumps(m, indent=2, ensure_ascii=False, allow_nan=False), encoding="utf-8"
    )
    images: dict[str, str] = {"confusion": plot_confusion(m, out_dir / "confusion.png")}
    if any(_ok(c["over_prediction"]["value"]) for c in m["agreement"]["per_class"]):
        images["overprediction"] = plot_overprediction(m, out_dir / "overprediction.png")
    if m.get("calibration"):
        images["reliability"] = plot_reliability(m, out_dir / "reliability.png")
    if m.get("budget_curve", {}).get("n"):
        images["budget"] = plot_budget(m, out_dir / "budget.png")
    blocks = build_blocks(m, images)
    (out_dir / "report.md").write_text(render_md(blocks), encoding="utf-8")
    data = {name: (out_dir / name).read_bytes() for name in images.values()}
    (out_dir / "report.html").write_text(render_html(blocks, data, f"labeler report {m['run_id']}"), encoding="utf-8")
    paths = {k: out_dir / v for k, v in images.items()}
    paths.update({k: out_dir / k for k in ("metrics.json", "report.md", "report.html")})
    return paths
