"""`labeler study RUN_DIR`: the cost/quality study of a run, from its data to its report.

Order of events, which is what makes the numbers believable:
    1. the test split is drawn (labeler.study.data, by item id and seed) before anything else;
    2. TF-IDF and LSA features are fitted on the pool's texts only;
    3. students are trained on (a) the LLM's labels of the pool (plain, confidence-weighted, and only the
       labels with confidence >= `llm_threshold`), (b) the LLM's labels with the review workflow's
       corrections, (c) all human labels of the pool (the ceiling), and (d) human labels chosen by each
       strategy, in rounds from one random seed set per repeat, with the equal-cost budget in the schedule;
    4. only then is every student scored on the test split (labeler.study.metrics).

The equal-cost budget is what the LLM run (pool items) plus its review cost, in human labels at the stated
price per label: `floor(dollars / price)`, so the human arm never costs more, and less by under one label.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labeler.study.classifiers import Factory, Features, featurize, fit_proba, make_factory
from labeler.study.data import ListPrice, StudyData, StudyError, from_run, stopping_set
from labeler.study.loop import Trajectory, make_schedule, simulate, stop_budget, stop_plateau, stop_stable
from labeler.study.metrics import Scorer, cost_per_point
from labeler.study.strategies import RANDOM, STRATEGIES


@dataclass(frozen=True)
class StudyOptions:
    strategies: tuple[str, ...] = STRATEGIES
    test_fraction: float = 0.3
    seed: int = 0
    repeats: int = 3
    batch: int = 10
    seed_size: int | None = None  # default: max(2 per label, batch)
    max_labels: int | None = None  # default: max(equal-cost budget, 300), capped at the queryable pool
    classifier: str = "logreg"
    llm_threshold: float = 0.7
    committee: int = 5
    hybrid_factor: int = 5
    stop_set: int = 500
    kappa: float = 0.99
    min_gain: float = 0.01
    cv_folds: int = 3
    n_boot: int = 1000
    level: float = 0.95
    list_price: ListPrice = field(default_factory=ListPrice)
    price_per_label: float | None = None

    def check(self) -> None:
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown:
            raise StudyError(f"unknown strategy {', '.join(unknown)}: choose from {', '.join(STRATEGIES)}")
        if self.repeats < 1 or self.batch < 1 or self.committee < 2 or self.n_boot < 10:
            raise StudyError("--repeats and --batch must be >= 1, --committee >= 2, --n-boot >= 10")


_Fit = tuple[str, str, np.ndarray, np.ndarray | None]  # key, description, pool rows, sample weights


def _llm_students(
    data: StudyData, feats: Features, factory: Factory, k: int, threshold: float
) -> list[tuple[str, str, np.ndarray, int, float]]:
    """(key, description, test predictions, training labels, dollars) for the students trained on LLM labels."""
    p = data.prices
    out: list[tuple[str, str, np.ndarray, int, float]] = []
    has = data.llm >= 0
    if not has.any():
        return out
    X = feats.pool
    conf = np.where(
        np.isfinite(data.confidence),
        data.confidence,
        np.nanmedian(data.confidence[has]) if np.isfinite(data.confidence[has]).any() else 1.0,
    )
    idx = np.flatnonzero(has)
    runs: list[_Fit] = [("llm", "student on the LLM's labels (whole pool)", idx, None)]
    if np.isfinite(data.confidence[has]).any():
        runs.append(("llm_weighted", "student on the LLM's labels, weighted by confidence", idx, conf[idx]))
        keep = np.flatnonzero(has & (conf >= threshold))
        if len(keep):
            runs.append(
                (f"llm_conf{threshold:g}", f"student on the LLM's labels with confidence ≥ {threshold:g}", keep, None)
            )
    for key, desc, rows, w in runs:
        st = fit_proba(factory, X[rows], data.llm[rows], k, sample_weight=w)
        out.append((key, desc, st.proba(feats.test).argmax(1), len(rows), p.llm_cost))
    if p.review_labels > 0:
        rows = np.flatnonzero(data.corrected >= 0)
        st = fit_proba(factory, X[rows], data.corrected[rows], k)
        desc = f"student on the LLM's labels with the review's {p.review_labels} human corrections"
        out.append(("llm_review", desc, st.proba(feats.test).argmax(1), len(rows), p.llm_plus_review))
    return out


def focus_class(data: StudyData) -> tuple[int, str]:
    """The class whose over-prediction the study's tables follow, chosen without the test split: the minority
    class when the pool's human labels are imbalanced (smallest < 0.8 × largest), else the class the LLM
    over-predicts most on the pool."""
    k = len(data.labels)
    counts = np.bincount(data.human[data.queryable], minlength=k)
    if counts.min() < 0.8 * counts.max() or not data.has_llm:
        return int(np.argmin(counts)), "the minority class of the pool's human labels"
    both = (data.human >= 0) & (data.llm >= 0)
    ratio = np.bincount(data.llm[both], minlength=k) / np.maximum(np.bincount(data.human[both], minlength=k), 1)
    rule = f"classes are balanced; the class the LLM over-predicts most on the pool ({ratio.max():.2f}×)"
    return int(np.argmax(ratio)), rule


def run_study(data: StudyData, opts: StudyOptions = StudyOptions()) -> dict[str, Any]:
    """The whole study on `data`; returns the results as a JSON-able dict (what the report is drawn from)."""
    from threadpoolctl import threadpool_limits

    opts.check()
    with threadpool_limits(limits=1):  # many tiny fits and distance computations: threads only contend
        return _run_study(data, opts)


def _run_study(data: StudyData, opts: StudyOptions) -> dict[str, Any]:
    t0 = time.perf_counter()
    labels, k, prices = data.labels, len(data.labels), data.prices
    factory = make_factory(opts.classifier)
    queryable = data.queryable
    n_query = int(queryable.sum())
    budget_dollars = prices.llm_plus_review if data.has_llm else 0.0
    equal_n = min(prices.equal_labels(budget_dollars), n_query)
    seed_size = opts.seed_size or max(2 * k, opts.batch)
    seed_size = min(seed_size, n_query)
    max_labels = min(n_query, opts.max_labels or max(equal_n, 300))
    schedule = make_schedule(seed_size=seed_size, batch=opts.batch, max_labels=max_labels, marks=[equal_n])

    feats = featurize(data.texts, data.test_texts, seed=opts.seed)
    t_feat = time.perf_counter() - t0
    stop_idx = stopping_set(data.ids, size=opts.stop_set, seed=opts.seed)
    pool_q = np.flatnonzero(queryable)
    seeds = [
        np.random.default_rng([opts.seed, r, 7]).choice(pool_q, size=seed_size, replace=False)
        for r in range(opts.repeats)
    ]
    trajectories: dict[str, list[Trajectory]] = {}
    for strategy in opts.strategies:
        trajectories[strategy] = [
            simulate(
                strategy,
                features=feats,
                oracle=data.human,
                queryable=queryable,
                seed_set=seeds[r],
                stop_idx=stop_idx,
                schedule=schedule,
                factory=factory,
                k=k,
                seed=opts.seed,
                repeat=r,
                committee=opts.committee,
                hybrid_factor=opts.hybrid_factor,
                cv_folds=opts.cv_folds,
                labels=labels,
            )
            for r in range(opts.repeats)
        ]
    t_loop = time.perf_counter() - t0 - t_feat

    scorer = Scorer.make(data.test_human, k, n_boot=opts.n_boot, seed=opts.seed, level=opts.level)
    ppl = prices.price_per_label
    sizes = list(schedule.sizes)
    curves: dict[str, Any] = {}
    for strategy, trs in trajectories.items():
        rows = []
        for j, n in enumerate(sizes):
            preds = [t.test_pred[j] for t in trs]
            s = scorer.summary(preds, labels)
            s.update(
                labels=n,
                dollars=n * ppl,
                ece=scorer.ece(preds, [t.test_conf[j] for t in trs]),
                mean_confidence=float(np.mean([t.test_conf[j].mean() for t in trs])),
                cv_f1=float(np.nanmean([t.cv_f1[j] for t in trs]))
                if any(np.isfinite(t.cv_f1[j]) for t in trs)
                else float("nan"),
                f1_repeats=[float(scorer.stats([p])["f1_macro"][0]) for p in preds],
            )
            if strategy != RANDOM and RANDOM in trajectories:
                s["vs_random"] = scorer.difference(preds, [t.test_pred[j] for t in trajectories[RANDOM]])
            rows.append(s)
        stops = {}
        for rule in ("stable", "plateau", "budget"):
            at = []
            for t in trs:
                if rule == "stable":
                    at.append(stop_stable(t.stop_pred, threshold=opts.kappa))
                elif rule == "plateau":
                    at.append(stop_plateau(t.cv_f1, min_gain=opts.min_gain))
                else:
                    at.append(stop_budget(t.sizes, equal_n if equal_n >= seed_size else sizes[-1]))
            fired = [(t, a) for t, a in zip(trs, at, strict=True) if a is not None]
            stops[rule] = {
                "fired": len(fired),
                "repeats": len(trs),
                "rounds": list(at),
                "labels": float(np.mean([sizes[a] for _, a in fired])) if fired else None,
                "dollars": float(np.mean([sizes[a] for _, a in fired])) * ppl if fired else None,
                "f1_macro": scorer.summary([t.test_pred[a] for t, a in fired], labels)["f1_macro"] if fired else None,
            }
        curves[strategy] = {"rounds": rows, "stopping": stops, "seconds": float(sum(t.seconds for t in trs))}

    arms: list[dict[str, Any]] = []
    if data.has_llm:
        arms.append(
            {
                "key": "llm_direct",
                "name": "the LLM's own labels of the test items (no student)",
                "kind": "reference",
                "training_labels": 0,
                "human_labels": 0,
                "dollars": None,
                **scorer.summary([data.test_llm], labels),
            }
        )
    for key, desc, pred, n_train, dollars in _llm_students(data, feats, factory, k, opts.llm_threshold):
        arms.append(
            {
                "key": key,
                "name": desc,
                "kind": "llm",
                "training_labels": n_train,
                "human_labels": prices.review_labels if key == "llm_review" else 0,
                "dollars": dollars,
                **scorer.summary([pred], labels),
            }
        )
    if equal_n in sizes:
        j = sizes.index(equal_n)
        for strategy in trajectories:
            row = curves[strategy]["rounds"][j]
            arms.append(
                {
                    "key": f"human_{strategy}",
                    "name": f"student on {equal_n} human labels chosen by {strategy}",
                    "kind": "human",
                    "training_labels": equal_n,
                    "human_labels": equal_n,
                    "dollars": equal_n * ppl,
                    **{x: row[x] for x in ("f1_macro", "accuracy", "per_class", "confusion")},
                }
            )
    elif equal_n > 0:  # the equal-cost budget is smaller than the seed set: a random sample of that size
        preds = []
        for r in range(opts.repeats):
            pick_ = np.random.default_rng([opts.seed, r, 11]).choice(pool_q, size=equal_n, replace=False)
            preds.append(fit_proba(factory, feats.pool[pick_], data.human[pick_], k).proba(feats.test).argmax(1))
        arms.append(
            {
                "key": "human_random",
                "name": f"student on {equal_n} random human labels",
                "kind": "human",
                "training_labels": equal_n,
                "human_labels": equal_n,
                "dollars": equal_n * ppl,
                **scorer.summary(preds, labels),
            }
        )
    all_q = np.flatnonzero(queryable)
    st = fit_proba(factory, feats.pool[all_q], data.human[all_q], k)
    arms.append(
        {
            "key": "human_all",
            "name": f"student on all {n_query} human labels of the pool (ceiling)",
            "kind": "human",
            "training_labels": n_query,
            "human_labels": n_query,
            "dollars": n_query * ppl,
            **scorer.summary([st.proba(feats.test).argmax(1)], labels),
        }
    )
    for a in arms:
        a["cost_per_point"] = cost_per_point(a["dollars"], a["f1_macro"]["value"]) if a["dollars"] else None

    pool_counts = np.bincount(data.human[queryable], minlength=k)
    focus, focus_rule = focus_class(data)
    return {
        "settings": {
            **{k_: v for k_, v in asdict(opts).items() if k_ != "list_price"},
            "strategies": list(opts.strategies),
            "seed_size": seed_size,
            "max_labels": max_labels,
        },
        "labels": list(labels),
        "data": {
            "pool": len(data.ids),
            "queryable": n_query,
            "test": len(data.test_ids),
            "vocabulary": feats.vocabulary,
            "stopping_set": len(stop_idx),
            "pool_counts": pool_counts.tolist(),
            "test_counts": np.bincount(data.test_human, minlength=k).tolist(),
            "focus": labels[focus],
            "focus_rule": focus_rule,
            "llm_labeled": int((data.llm >= 0).sum()),
            "confidence_source": data.confidence_source,
            "test_fraction": data.test_fraction,
            "split_seed": data.seed,
        },
        "prices": {**asdict(prices), "review_cost": prices.review_cost, "llm_plus_review": prices.llm_plus_review},
        "equal_cost": {"dollars": budget_dollars, "labels": equal_n},
        "schedule": sizes,
        "curves": curves,
        "arms": arms,
        "timing": {
            "features": t_feat,
            "loop": t_loop,
            "scoring": time.perf_counter() - t0 - t_feat - t_loop,
            "total": time.perf_counter() - t0,
        },
    }


def jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        return float(x) if np.isfinite(x) else None
    return x


def study_run(
    run_dir: Path,
    *,
    human_file: Path | None = None,
    out_dir: Path | None = None,
    opts: StudyOptions = StudyOptions(),
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Run the study on a labeled run and write RUN_DIR/study/ (study.json, split.json, report.md,
    report.html, PNGs). Returns the results and the written paths."""
    from labeler.study.report import write_report

    data = from_run(
        run_dir,
        human_file=human_file,
        test_fraction=opts.test_fraction,
        seed=opts.seed,
        list_price=opts.list_price,
        price_per_label=opts.price_per_label,
    )
    results = run_study(data, opts)
    results["run_id"] = Path(run_dir).name
    out = out_dir or Path(run_dir) / "study"
    out.mkdir(parents=True, exist_ok=True)
    write_split(out / "split.json", data)
    paths = write_report(jsonable(results), out)
    return results, paths


def write_split(path: Path, data: StudyData) -> None:
    """The test split, for the live picker and for anyone checking that nothing trained on it."""
    doc = {"seed": data.seed, "test_fraction": data.test_fraction, "test_ids": list(data.test_ids)}
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")


def read_split(path: Path) -> tuple[int, float] | None:
    """(seed, test_fraction) of a study's split file, or None when there is none."""
    if not path.exists():
        return None
    doc = json.loads(path.read_text(encoding="utf-8"))
    return int(doc["seed"]), float(doc["test_fraction"])


def strategy_names(values: Sequence[str] | None) -> tuple[str, ...]:
    """Strategies from a comma-separated CLI value (all when empty)."""
    if not values:
        return STRATEGIES
    return tuple(s.strip() for v in values for s in v.split(",") if s.strip())
