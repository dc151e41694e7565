"""The study's plots, drawn from the results dict with matplotlib's Figure API (no pyplot, no global state):
learning curves against labels and dollars, one panel per strategy against random, over-prediction per class
of every student, and the student's ECE per round."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from labeler.study.render import money, ok

ECE_WARNING = 0.10
COLOURS = ("#444444", "#c0392b", "#2e6da4", "#27ae60", "#8e44ad", "#d35400", "#16a085", "#7f8c8d")


def _save(fig: Figure, path: Path) -> str:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path.name


def plot_curves(m: Mapping[str, Any], path: Path) -> str:
    fig = Figure(figsize=(12, 4.6))
    axes = [fig.add_subplot(1, 2, i) for i in (1, 2)]
    for (name, c), colour in zip(m["curves"].items(), COLOURS, strict=False):
        rows = c["rounds"]
        y = np.array([r["f1_macro"]["value"] for r in rows], dtype=float)
        lo = np.array([r["f1_macro"]["low"] for r in rows], dtype=float)
        hi = np.array([r["f1_macro"]["high"] for r in rows], dtype=float)
        for ax, key in zip(axes, ("labels", "dollars"), strict=True):
            x = np.array([r[key] for r in rows], dtype=float)
            ls = "--" if name == "random" else "-"
            ax.plot(x, y, ls, color=colour, lw=2 if name == "random" else 1.4, label=name)
            if name == "random":
                ax.fill_between(x, lo, hi, color=colour, alpha=0.15, label="random, 95% band")
    llm = [a for a in m["arms"] if a["kind"] == "llm" and a["key"] in ("llm", "llm_review")]
    for a, colour in zip(llm, ("#e67e22", "#f1c40f"), strict=False):
        v = a["f1_macro"]["value"]
        axes[0].axhline(v, color=colour, lw=1.5, ls=":", label=f"{a['key']} ({money(a['dollars'])})")
        axes[1].errorbar(
            [a["dollars"]],
            [v],
            yerr=[[v - a["f1_macro"]["low"]], [a["f1_macro"]["high"] - v]],
            fmt="D",
            color=colour,
            capsize=4,
            label=a["key"],
        )
    eq = m["equal_cost"]
    if eq["labels"]:
        axes[0].axvline(eq["labels"], color="black", lw=1, ls=":", label="equal cost")
        axes[1].axvline(eq["dollars"], color="black", lw=1, ls=":", label="equal cost")
    axes[0].set_xlabel("human labels")
    axes[1].set_xlabel(f"dollars (human labels at {money(m['prices']['price_per_label'])})")
    for ax in axes:
        ax.set_ylabel("macro-F1 on the test split")
        ax.grid(alpha=0.3)
    axes[0].set_title("Learning curves (mean of repeats; band: random's 95% bootstrap over test items)", fontsize=10)
    axes[1].set_title("The same against dollars; diamonds: students on the LLM's labels", fontsize=10)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def plot_panels(m: Mapping[str, Any], path: Path) -> str:
    """One panel per strategy: its curve and 95% band against random's, by human labels."""
    curves = {n: c for n, c in m["curves"].items() if n != "random"}
    base = m["curves"].get("random")
    cols = 3
    rows_n = max(1, math.ceil(len(curves) / cols))
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows_n))
    for i, ((name, c), colour) in enumerate(zip(curves.items(), COLOURS[1:], strict=False), 1):
        ax = fig.add_subplot(rows_n, cols, i)
        for cur, col, label in ((base, COLOURS[0], "random"), (c, colour, name)):
            if cur is None:
                continue
            x = [r["labels"] for r in cur["rounds"]]
            y = np.array([r["f1_macro"]["value"] for r in cur["rounds"]], dtype=float)
            lo = np.array([r["f1_macro"]["low"] for r in cur["rounds"]], dtype=float)
            hi = np.array([r["f1_macro"]["high"] for r in cur["rounds"]], dtype=float)
            ax.plot(x, y, "--" if label == "random" else "-", color=col, lw=1.5, label=label)
            ax.fill_between(x, lo, hi, color=col, alpha=0.15)
        if m["equal_cost"]["labels"]:
            ax.axvline(m["equal_cost"]["labels"], color="black", lw=1, ls=":")
        ax.set_title(f"{name} vs random", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        ax.set_xlabel("human labels", fontsize=8)
        ax.set_ylabel("macro-F1 (test)", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_overprediction(m: Mapping[str, Any], path: Path) -> str:
    arms = m["arms"]
    labels = m["labels"]
    fig = Figure(figsize=(3.0 * len(labels) + 1, 0.32 * len(arms) + 1.6))
    for j, lab in enumerate(labels):
        ax = fig.add_subplot(1, len(labels), j + 1)
        y = np.arange(len(arms))
        e = [a["per_class"][j]["over_prediction"] for a in arms]
        v = np.array([x["value"] if ok(x["value"]) else np.nan for x in e])
        lo = np.array([x["low"] if ok(x["low"]) else vv for x, vv in zip(e, v, strict=True)])
        hi = np.array([x["high"] if ok(x["high"]) else vv for x, vv in zip(e, v, strict=True)])
        col = ["#c0392b" if a > 1 else "#2e6da4" if b < 1 else "#777777" for a, b in zip(lo, hi, strict=True)]
        for yi, a, b, c in zip(y, lo, hi, col, strict=True):
            ax.plot([a, b], [yi, yi], color=c, lw=1.5)
        ax.scatter(v, y, c=col, s=18, zorder=3)
        ax.axvline(1.0, color="black", lw=1)
        ax.set_yticks(y, labels=[a["key"] for a in arms] if j == 0 else [""] * len(arms), fontsize=7)
        ax.invert_yaxis()
        ax.set_title(lab, fontsize=9)
        ax.set_xlabel("#predicted / #true", fontsize=8)
    fig.suptitle("Over-prediction per class on the test split, 95% interval (red: above 1, blue: below 1)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_ece(m: Mapping[str, Any], path: Path) -> str:
    fig = Figure(figsize=(6.5, 3.8))
    ax = fig.add_subplot()
    for (name, c), colour in zip(m["curves"].items(), COLOURS, strict=False):
        ax.plot([r["labels"] for r in c["rounds"]], [r["ece"] for r in c["rounds"]], color=colour, lw=1.3, label=name)
    ax.axhline(ECE_WARNING, color="#c0392b", lw=1, ls=":", label="warning (0.10)")
    ax.set_xlabel("human labels")
    ax.set_ylabel("ECE of the student's top-label probability")
    ax.set_title("Calibration of the student per round (test split, 10 bins)", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)
