"""The PNG plots of a multi-label or span report, drawn from its metrics dict in report_plots' style
(matplotlib's Agg canvas through `Figure`, names drawn as text with `$` and control characters defused):
F1 per label or entity type with its interval, over-prediction per label or type, and for spans the error
structure per entity type as stacked bars."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from labeler.evaluate.formatting import ok
from labeler.evaluate.report_plots import _save, _text
from labeler.tasktypes.span_scores import ERRORS

ERROR_COLOURS = ("#2e8b57", "#e67e22", "#f1c40f", "#8e44ad", "#7f8c8d", "#c0392b")
# per task type: what a class of elements is called and what one element is; its F1 tables (title, key in the
# evaluation, None for the evaluation itself), the first being the main one
WORDS = {"multi_label": ("label", "label"), "spans": ("entity type", "span")}
F1_TABLES: dict[str, tuple[tuple[str, str | None], ...]] = {
    "multi_label": (("F1", None),),
    "spans": (("exact-match F1", "exact"), ("partial-match F1", "partial")),
}


def tables(task_type: str, ev: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """The (title, per-class table) pairs of an evaluation of this task type, the main one first."""
    return [(title, ev if key is None else ev[key]) for title, key in F1_TABLES[task_type]]


def primary(task_type: str, ev: Mapping[str, Any]) -> Mapping[str, Any]:
    """The main per-class table of an evaluation (multi_label: the evaluation; spans: exact match)."""
    return tables(task_type, ev)[0][1]


def _rows(per_class: Sequence[Mapping[str, Any]], key: str) -> list[Mapping[str, Any]]:
    return [c for c in per_class if c["name"] != "all" and ok(c[key]["value"])]


def _bars(ax: Any, rows: Sequence[Mapping[str, Any]], key: str, colour: str | Sequence[str]) -> None:
    y = np.arange(len(rows))
    vals = np.array([c[key]["value"] for c in rows])
    lo = np.array([c[key]["low"] if ok(c[key]["low"]) else v for c, v in zip(rows, vals, strict=True)])
    hi = np.array([c[key]["high"] if ok(c[key]["high"]) else v for c, v in zip(rows, vals, strict=True)])
    ax.barh(y, vals, color=colour, xerr=np.vstack([vals - lo, hi - vals]), capsize=4)
    ax.set_yticks(y, labels=[_text(c["name"]) for c in rows])
    ax.invert_yaxis()


def plot_f1(m: Mapping[str, Any], path: Path) -> str:
    """F1 per label (multi_label) or exact and partial F1 per entity type (spans), 95% intervals."""
    shown = tables(m["task_type"], m["evaluation"])
    n = max(len(_rows(t["per_class"], "f1")) for _, t in shown)
    fig = Figure(figsize=(4.2 * len(shown) + 1.5, 0.45 * n + 1.6))
    for i, (title, table) in enumerate(shown, 1):
        ax = fig.add_subplot(1, len(shown), i)
        _bars(ax, _rows(table["per_class"], "f1"), "f1", "#2e6da4")
        ax.set_xlim(0, 1.05)
        ax.set_xlabel(f"{title} (95% bootstrap interval)")
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"F1 per {WORDS[m['task_type']][0]}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_overprediction(m: Mapping[str, Any], path: Path) -> str:
    rows = _rows(primary(m["task_type"], m["evaluation"])["per_class"], "over_prediction")
    fig = Figure(figsize=(6.5, 0.45 * len(rows) + 1.5))
    ax = fig.add_subplot()
    op = [c["over_prediction"] for c in rows]
    colours = ["#c0392b" if ok(e["low"]) and e["low"] > 1 else "#2e6da4" if ok(e["high"]) and e["high"] < 1
               else "#999999" for e in op]
    _bars(ax, rows, "over_prediction", colours)
    ax.axvline(1.0, color="black", lw=1)
    ax.set_xlabel("#predicted / #true  (red: over-predicted, blue: under-predicted, interval excludes 1)")
    ax.set_title("Over-prediction ratio, 95% bootstrap interval", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_span_errors(m: Mapping[str, Any], path: Path) -> str:
    """Per entity type, how its spans fared: stacked counts of each kind of error."""
    by_type = m["evaluation"]["errors_by_type"]
    types = list(by_type)
    counts = np.array([[by_type[t][e]["value"] for e in ERRORS] for t in types], dtype=float)
    fig = Figure(figsize=(7.5, 0.5 * len(types) + 2.4))
    ax = fig.add_subplot()
    y = np.arange(len(types))
    left = np.zeros(len(types))
    for j, err in enumerate(ERRORS):
        ax.barh(y, counts[:, j], left=left, color=ERROR_COLOURS[j], label=err.replace("_", " "))
        left += counts[:, j]
    ax.set_yticks(y, labels=[_text(t) for t in types])
    ax.invert_yaxis()
    ax.set_xlabel("spans (human spans by their type; spurious by the predicted type)")
    ax.set_title("Error structure per entity type", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=3)
    fig.tight_layout()
    return _save(fig, path)


def draw_all(m: Mapping[str, Any], out_dir: Path) -> dict[str, str]:
    """Every plot the metrics allow, into out_dir: role (f1, overprediction, span_errors) -> file name."""
    ev = m["evaluation"]
    table = primary(m["task_type"], ev)
    images = {}
    if _rows(table["per_class"], "f1"):
        images["f1"] = plot_f1(m, out_dir / "f1.png")
    if _rows(table["per_class"], "over_prediction"):
        images["overprediction"] = plot_overprediction(m, out_dir / "overprediction.png")
    if "errors_by_type" in ev:
        images["span_errors"] = plot_span_errors(m, out_dir / "span_errors.png")
    return images
