"""Cost and quality: accuracy against review budget (lowest confidence first vs at random), and the cost of
labelling a corpus by LLM only, LLM plus review, or humans only."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats


def budget_curve(
    correct: Sequence[bool],
    confidence: Sequence[float | None],
    *,
    budgets: Sequence[int],
    level: float = 0.95,
) -> dict[str, list[float]]:
    """Final accuracy when `b` items are reviewed (their LLM label replaced by the human one, taken as
    correct), for each b in `budgets`, on n items whose correctness is known.

    correct: (n,) whether the LLM label is right; confidence: (n,) its confidence (None/NaN = unknown,
    reviewed first). "lowest_first" reviews in increasing confidence, ties in random order (the curve is
    the expectation: linear within a tie); "random" is the expectation of random routing, with the
    hypergeometric `level` band ("random_low", "random_high")."""
    ok = np.asarray(correct, dtype=bool)
    n, errors = len(ok), int((~ok).sum())
    conf = np.array([-np.inf if c is None else c for c in confidence], dtype=float)
    conf[np.isnan(conf)] = -np.inf
    order = np.argsort(conf, kind="stable")
    s, wrong = conf[order], (~ok[order]).astype(float)
    ends = np.r_[np.flatnonzero(s[1:] != s[:-1]) + 1, n]
    xs = np.r_[0, ends]
    ys = np.r_[0.0, np.cumsum(wrong)[ends - 1]]
    b = np.clip(np.asarray(budgets, dtype=float), 0, n)
    fixed = np.interp(b, xs, ys)
    base = ok.sum()
    q = (1 - level) / 2
    dist = stats.hypergeom(n, errors, b.astype(int))
    return {
        "budget": b.astype(int).tolist(),
        "lowest_first": ((base + fixed) / n).tolist(),
        "random": ((base + b * errors / n) / n).tolist(),
        "random_low": ((base + dist.ppf(q)) / n).tolist(),
        "random_high": ((base + dist.ppf(1 - q)) / n).tolist(),
    }


def cost_scenarios(
    *,
    n_items: int,
    llm_cost: float,
    price_per_label: float,
    review_budget: int,
    llm_accuracy: float,
    reviewed_accuracy: float,
    human_accuracy: float = 1.0,
) -> list[dict[str, Any]]:
    """Cost and accuracy of three ways to label n items: LLM only; LLM plus `review_budget` human labels;
    all human. Cost per label = cost / n; cost per accuracy point = cost / (100 · accuracy)."""
    rows = [
        ("LLM only", llm_cost, 0, llm_accuracy),
        ("LLM + review", llm_cost + price_per_label * review_budget, review_budget, reviewed_accuracy),
        ("all human", price_per_label * n_items, n_items, human_accuracy),
    ]
    return [
        {
            "scenario": name,
            "human_labels": labels_n,
            "cost": cost,
            "accuracy": acc,
            "cost_per_label": cost / n_items if n_items else float("nan"),
            "cost_per_accuracy_point": cost / (100 * acc) if acc and not math.isnan(acc) else float("nan"),
        }
        for name, cost, labels_n, acc in rows
    ]
