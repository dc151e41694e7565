"""The report's PNG plots, drawn from the metrics dict: confusion heatmaps, over-prediction ratios,
reliability diagrams and the review-budget curve. matplotlib's Agg canvas through `matplotlib.figure.Figure`
(no pyplot, no global state). Label names are drawn as text by matplotlib, never interpreted as markup
(`$` and control characters are made harmless first)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from labeler.evaluate.escape import visible
from labeler.evaluate.formatting import num, ok


def _text(s: Any) -> str:
    """A label for matplotlib: control characters visible, `$` not starting mathtext."""
    return visible(s).replace("$", r"\$")


def _save(fig: Figure, path: Path) -> str:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path.name


def _heatmap(
    ax: Any, mat: np.ndarray, counts: np.ndarray, rows: Sequence[str], cols: Sequence[str], title: str
) -> None:
    ax.imshow(mat, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(cols)), labels=[_text(c) for c in cols], rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), labels=[_text(r) for r in rows])
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
    cls = [c for c in m["agreement"]["per_class"] if ok(c["over_prediction"]["value"])]
    fig = Figure(figsize=(6.5, 0.45 * len(cls) + 1.5))
    ax = fig.add_subplot()
    y = np.arange(len(cls))
    vals = np.array([c["over_prediction"]["value"] for c in cls])
    lo = np.array(
        [c["over_prediction"]["low"] if ok(c["over_prediction"]["low"]) else v for c, v in zip(cls, vals, strict=True)]
    )
    hi = np.array(
        [
            c["over_prediction"]["high"] if ok(c["over_prediction"]["high"]) else v
            for c, v in zip(cls, vals, strict=True)
        ]
    )
    colours = ["#c0392b" if lo_ > 1 else "#2e6da4" if hi_ < 1 else "#999999" for lo_, hi_ in zip(lo, hi, strict=True)]
    ax.barh(y, vals, color=colours, xerr=np.vstack([vals - lo, hi - vals]), capsize=4)
    ax.axvline(1.0, color="black", lw=1)
    ax.set_yticks(y, labels=[_text(c["label"]) for c in cls])
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
        ax.set_title(f"{_text(c['name'])}\nECE {num(c['ece']['value'], 3)}, n={c['n']}", fontsize=9)
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
            ax.plot(x, 100 * np.array(c["lowest_first"]), lw=2, label=f"lowest {_text(name)} first")
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


def draw_all(m: Mapping[str, Any], out_dir: Path) -> dict[str, str]:
    """Draw every plot the metrics allow into out_dir: role (confusion, overprediction, reliability, budget)
    → file name."""
    images = {"confusion": plot_confusion(m, out_dir / "confusion.png")}
    if any(ok(c["over_prediction"]["value"]) for c in m["agreement"]["per_class"]):
        images["overprediction"] = plot_overprediction(m, out_dir / "overprediction.png")
    if m.get("calibration"):
        images["reliability"] = plot_reliability(m, out_dir / "reliability.png")
    if m.get("budget_curve", {}).get("n"):
        images["budget"] = plot_budget(m, out_dir / "budget.png")
    return images
