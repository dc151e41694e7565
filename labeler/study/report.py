"""The study's report: study.json, PNG plots (labeler.study.plots), report.md and a self-contained report.html
(labeler.study.render), in the evaluation report's style. Everything is read from the results dict of
labeler.study.run.run_study, so a report can be rebuilt from study.json alone."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labeler.evaluate.formatting import num
from labeler.study.plots import ECE_WARNING, plot_curves, plot_ece, plot_overprediction, plot_panels
from labeler.study.render import Block, bullets, f1, money, ok, render_html, render_md, table


def _ece(e: Any) -> str:
    return "n/a" if not ok(e) else f"{e:.3f}" + (" ⚠" if e > ECE_WARNING else "")


def focus_ratio(m: Mapping[str, Any], per_class: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The over-prediction estimate of the study's focus class (see labeler.study.run.focus_class)."""
    return next(c for c in per_class if c["label"] == m["data"]["focus"])["over_prediction"]


def table_budgets(m: Mapping[str, Any]) -> list[int]:
    """Columns of the strategy × budget table: the seed set, the equal-cost budget, and quarter points."""
    sizes = m["schedule"]
    want = {sizes[0], sizes[-1], m["equal_cost"]["labels"]}
    want |= {min(sizes, key=lambda s: abs(s - f * sizes[-1])) for f in (0.25, 0.5)}
    return sorted(s for s in want if s in sizes)


# --- the report -----------------------------------------------------------------------------------------------


def summary_sentences(m: Mapping[str, Any]) -> list[str]:
    out = []
    p, eq, arms = m["prices"], m["equal_cost"], {a["key"]: a for a in m["arms"]}
    focus = m["data"]["focus"]
    if "llm" in arms:
        out.append(
            f"The LLM's labels of the {m['data']['pool']} pool items cost {money(p['llm_cost'])} and their review "
            f"{money(p['review_cost'])} ({p['review_labels']} human labels at {money(p['price_per_label'])}); "
            f"the same {money(eq['dollars'])} buys {eq['labels']} human labels."
        )
    parts = []
    for key, what in (
        ("llm_direct", "the LLM's own labels"),
        ("llm", "a student on the LLM's labels"),
        ("llm_review", "one on the LLM's labels with the review's corrections"),
        ("human_random", f"one on {eq['labels']} random human labels (same cost)"),
        ("human_all", f"one on all {m['data']['queryable']} human labels of the pool"),
    ):
        a = arms.get(key)
        if a:
            op = focus_ratio(m, a["per_class"])
            parts.append(
                f"{what} {f1(a['f1_macro'])}, {focus} ×{num(op['value'])} ({num(op['low'])}–{num(op['high'])})"
            )
    if parts:
        out.append(
            "Macro-F1 on the test split, and how often each predicts the focus class "
            f"{focus} relative to its true count: " + "; ".join(parts) + "."
        )
    eqn = eq["labels"]
    if eqn in m["schedule"] and "random" in m["curves"]:
        j = m["schedule"].index(eqn)
        gains = {s: c["rounds"][j].get("vs_random") for s, c in m["curves"].items() if s != "random"}
        gains = {s: g for s, g in gains.items() if g and ok(g["value"])}
        if gains:
            best = max(gains, key=lambda s: gains[s]["value"])
            g = gains[best]
            sig = "an interval that excludes 0" if g["low"] > 0 or g["high"] < 0 else "an interval that includes 0"
            out.append(
                f"At {eqn} labels the best strategy, {best}, is {num(g['value'], 3)} macro-F1 above random "
                f"({num(g['low'], 3)} to {num(g['high'], 3)}: {sig})."
            )
    warn = [
        (s, c["rounds"][-1])
        for s, c in m["curves"].items()
        if ok(c["rounds"][-1]["ece"]) and c["rounds"][-1]["ece"] > ECE_WARNING
    ]
    if warn:
        under = sum(r["mean_confidence"] < r["accuracy"]["value"] for _, r in warn)
        side = "under-confident" if 2 * under >= len(warn) else "over-confident"
        out.append(
            f"Warning: the student's probabilities are miscalibrated at the last round (ECE > 0.10, mostly "
            f"{side}) for {', '.join(s for s, _ in warn)}: read its uncertainty as a ranking, not a probability."
        )
    return out


def build_blocks(m: Mapping[str, Any], images: Mapping[str, str]) -> list[Block]:
    d, p, s, eq = m["data"], m["prices"], m["settings"], m["equal_cost"]
    labels, focus = m["labels"], d["focus"]
    B = [Block("h1", f"Cost/quality study of run {m.get('run_id', '')}"), Block("h2", "What this shows")]
    B += [Block("summary", t) for t in summary_sentences(m)]
    B.append(Block("h2", "Prices and data"))
    price_rows = [
        f"human labels: {money(p['price_per_label'])} each (the task's review.price_per_label unless overridden)",
        f"LLM: {money(p['llm_cost'])} for the pool — {p['llm_source']}",
        f"review workflow: {p['review_labels']} human labels on pool items = {money(p['review_cost'])}",
        f"equal-cost budget: LLM + review = {money(eq['dollars'])} = {eq['labels']} human labels",
    ]
    B.append(bullets(price_rows))
    B.append(
        Block(
            "p",
            (
                f"Test split: {d['test']} items with a human label, drawn first (seed {d['split_seed']}, fraction "
                f"{d['test_fraction']:g}, by item id) and used for nothing but scoring. Pool: {d['pool']} items, "
                f"{d['queryable']} with a human label (the oracle), {d['llm_labeled']} with an LLM label; TF-IDF "
                f"vocabulary of {d['vocabulary']:,} terms fitted on the pool. Test counts: "
                + ", ".join(f"{lab} {n}" for lab, n in zip(labels, d["test_counts"], strict=True))
                + f"; focus class {focus} ({d['focus_rule']}). LLM confidence: {d['confidence_source']}."
            ),
        )
    )
    B.append(Block("h2", "Error structure of each student (test split)"))
    B.append(
        Block(
            "p",
            "Over-prediction = #predicted / #true: above 1 the student uses a label too often. "
            "Human arms at the equal-cost budget average their repeats.",
        )
    )
    head = [
        "student",
        "training labels",
        "human labels",
        "dollars",
        "macro-F1",
        "$ per F1 point",
        *[f"over-pred. {lab}" for lab in labels],
    ]
    rows = [
        [
            a["key"],
            a["training_labels"],
            a["human_labels"],
            money(a["dollars"]),
            f1(a["f1_macro"]),
            money(a["cost_per_point"]),
            *[f1(c["over_prediction"]) for c in a["per_class"]],
        ]
        for a in m["arms"]
    ]
    B.append(table(head, rows))
    B.append(bullets([f"{a['key']}: {a['name']}" for a in m["arms"]]))
    if "overprediction" in images:
        B.append(Block("img", images["overprediction"]))
    B.append(Block("h3", "Most frequent confusions (true → predicted, test items)"))
    conf_rows = []
    for a in m["arms"]:
        cm = np.array(a["confusion"], dtype=float)[: len(labels), : len(labels)]
        np.fill_diagonal(cm, 0)
        top = np.dstack(np.unravel_index(np.argsort(-cm, axis=None)[:3], cm.shape))[0]
        conf_rows.append([a["key"], "; ".join(f"{labels[i]} → {labels[j]} {cm[i, j]:.3g}" for i, j in top if cm[i, j])])
    B.append(table(["student", "top confusions"], conf_rows))

    B.append(Block("h2", "Strategy × budget"))
    budgets = table_budgets(m)
    B.append(
        Block(
            "p",
            f"Each cell: macro-F1 (95% interval) · over-prediction of the focus class {focus} "
            f"(interval) · dollars. Mean of {s['repeats']} repeats; intervals resample test items.",
        )
    )
    sizes = m["schedule"]
    rows = []
    for name, c in m["curves"].items():
        cells = []
        for b in budgets:
            r = c["rounds"][sizes.index(b)]
            cells.append(f"{f1(r['f1_macro'])} · {f1(focus_ratio(m, r['per_class']))} · {money(r['dollars'])}")
        rows.append([name, *cells])
    B.append(
        table(["strategy", *[f"{b} labels" + (" (equal cost)" if b == eq["labels"] else "") for b in budgets]], rows)
    )
    rows = [
        [name, *[f1(c["rounds"][sizes.index(b)].get("vs_random")) for b in budgets]]
        for name, c in m["curves"].items()
        if name != "random"
    ]
    if rows:
        B.append(Block("h3", "Gain over random sampling (paired: same resampled test items)"))
        B.append(table(["strategy", *[f"{b} labels" for b in budgets]], rows))
    if "curves" in images:
        B.append(Block("img", images["curves"]))
    if "panels" in images:
        B.append(Block("img", images["panels"]))

    B.append(Block("h2", "Stopping rules: where each would have stopped"))
    B.append(
        Block(
            "p",
            (
                f"stable: Cohen's κ of consecutive rounds' labels on an unlabeled stopping set of "
                f"{d['stopping_set']} pool items averages ≥ {s['kappa']:g} over three rounds; plateau: the "
                f"cross-validated macro-F1 on the labels so far gained < {s['min_gain']:g} over three rounds; "
                "budget: the equal-cost budget. No rule reads the test split; the macro-F1 column is what "
                "stopping there gave on it."
            ),
        )
    )
    rows = []
    for name, c in m["curves"].items():
        last = c["rounds"][-1]["f1_macro"]
        for rule, st in c["stopping"].items():
            rows.append(
                [
                    name,
                    rule,
                    f"{st['fired']}/{st['repeats']}",
                    num(st["labels"], 0),
                    money(st["dollars"]),
                    f1(st["f1_macro"]),
                    f1(last),
                ]
            )
    B.append(
        table(
            [
                "strategy",
                "rule",
                "fired (repeats)",
                "labels (mean)",
                "dollars",
                "macro-F1 at stop",
                f"macro-F1 at {sizes[-1]}",
            ],
            rows,
        )
    )

    B.append(Block("h2", "Calibration of the student per round"))
    show = sorted({sizes[0], *budgets, sizes[-1]})
    rows = [[name, *[_ece(c["rounds"][sizes.index(b)]["ece"]) for b in show]] for name, c in m["curves"].items()]
    B.append(table(["strategy", *[f"{b} labels" for b in show]], rows))
    B.append(
        Block(
            "p",
            "ECE of the student's top-label probability on the test split (10 equal-width bins); "
            "⚠ marks ECE above 0.10, where its uncertainty is not a probability to trust.",
        )
    )
    if "ece" in images:
        B.append(Block("img", images["ece"]))

    t = m["timing"]
    B.append(Block("h2", "Settings and time"))
    B.append(
        Block(
            "p",
            (
                f"Classifier {s['classifier']} on TF-IDF; seed set {s['seed_size']} random labels; batch "
                f"{s['batch']}; up to {s['max_labels']} labels; {s['repeats']} repeats; committee of "
                f"{s['committee']}; hybrid short list {s['hybrid_factor']}× the batch; {s['n_boot']} bootstrap "
                f"resamples. Time: {t['total']:.1f} s (features {t['features']:.1f} s, loop {t['loop']:.1f} s, "
                f"scoring {t['scoring']:.1f} s); per strategy: "
                + ", ".join(f"{n} {c['seconds']:.1f} s" for n, c in m["curves"].items())
                + "."
            ),
        )
    )
    return B


def write_report(results: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write study.json, the PNGs, report.md and report.html to out_dir. Returns the written paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    m = dict(results)
    m["summary"] = summary_sentences(m)
    (out_dir / "study.json").write_text(json.dumps(m, indent=1, ensure_ascii=False, allow_nan=False), encoding="utf-8")
    images = {
        "curves": plot_curves(m, out_dir / "curves.png"),
        "panels": plot_panels(m, out_dir / "curves_by_strategy.png"),
        "overprediction": plot_overprediction(m, out_dir / "overprediction.png"),
        "ece": plot_ece(m, out_dir / "ece.png"),
    }
    blocks = build_blocks(m, images)
    (out_dir / "report.md").write_text(render_md(blocks), encoding="utf-8")
    data = {name: (out_dir / name).read_bytes() for name in images.values()}
    title = f"labeler study {m.get('run_id', '')}"
    (out_dir / "report.html").write_text(render_html(blocks, data, title), encoding="utf-8")
    paths = {k: out_dir / v for k, v in images.items()}
    paths.update({k: out_dir / k for k in ("study.json", "report.md", "report.html")})
    return paths
