"""The quality loop measured (issue 12): before/after tables on items no choice was fitted on, the cost of
tuning, and labels/s with per-item (kNN) vs fixed few-shot examples on the embedded model.

For each dataset: label the corpus with the task as written (the "before" run), draw the random audit
(`labeler route`), take a seeded random dev sample of human labels from the other items (≤ 200: the only
human labels any choice sees), `labeler tune --dev`, `labeler relabel`, then compare the two runs'
labels with the corpus's human labels on

    held-out   every item outside the dev sample (the audit included): no choice was fitted on them
    audit      the random audit alone (smaller, so wider intervals)

Runs live under runs/quality/ and share the project's response cache (runs/cache.sqlite, or
$LABELER_CACHE): rerunning the script is served from the cache. `--bench N` also measures labels/s
fixed vs kNN side by side (alternating rounds of N uncached items each on one server).

    python eval/quality_loop.py                      # both datasets (hours on a busy 2-core machine)
    python eval/quality_loop.py --only spam --bench 12
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LABELER_CACHE", str(ROOT / "runs" / "cache.sqlite"))

from labeler.config import load_config  # noqa: E402
from labeler.evaluate.classification import agreement  # noqa: E402
from labeler.label import pipeline  # noqa: E402
from labeler.record import records  # noqa: E402
from labeler.review.router import route_run  # noqa: E402
from labeler.store import Cache, RunStore  # noqa: E402
from labeler.tune.candidates import candidate_task, candidates  # noqa: E402
from labeler.tune.relabel import format_relabel, relabel_run  # noqa: E402
from labeler.tune.run import format_report, label_texts, tune_run  # noqa: E402

# What each dataset's tuning tries: every variant x strategy of the task's own [[variants]] and [tune]
# (the BBC task: its prompt and an alternative, fixed / label-balanced / kNN examples; SpamAssassin: the
# plain answers and answer words, fixed / kNN examples). Each candidate costs one answer per dev item.
DATASETS: dict[str, dict[str, Any]] = {
    "bbc": {
        "task": "tasks/news_topic_tune.toml",
        "dev": 100,
        "audit_fraction": 0.1,
        "minority": None,
        "variants": ["fewshot", "alt"],
        "strategies": ["fixed", "balanced", "knn"],
    },
    "spam": {
        "task": "tasks/spam.toml",
        "dev": 100,
        "audit_fraction": 0.1,
        "minority": "spam",
        "variants": ["plain", "kind"],
        "strategies": ["fixed", "knn"],
    },
}
WORK = ROOT / "runs" / "quality"
SEED = 12


def _ids_labels(store: RunStore, *, raw: bool) -> dict[str, str | None]:
    """item id -> the run's label (raw: the label before any correction applied in place)."""
    out: dict[str, str | None] = {}
    for rec in records(store):
        c = rec.combined
        out[rec.id] = c.raw_label if raw and c is not None and c.raw_label is not None else rec.label
    return out


def base_run(name: str, spec: dict[str, Any]) -> Path:
    run_dir = WORK / f"{name}-base"
    task = load_config(ROOT / spec["task"])
    if (run_dir / "manifest.json").exists():
        asyncio.run(pipeline.resume_run(run_dir, show_progress=False))
    else:
        asyncio.run(pipeline.start_run(task, run_dir=run_dir, show_progress=False))
    return run_dir


def dev_sample(run_dir: Path, name: str, size: int, audit_fraction: float) -> tuple[Path, list[str], set[str]]:
    store = RunStore.open(run_dir)
    try:
        has_queue = bool(store.queue())
    finally:
        store.close()
    if not has_queue:
        route_run(run_dir, audit_fraction=audit_fraction, max_items=1, seed=SEED)  # the audit, kept whole
    store = RunStore.open(run_dir)
    try:
        audit = {e.item_id for e in store.queue() if e.audit}
        gold = store.gold_labels()
    finally:
        store.close()
    pool = sorted(i for i in gold if i not in audit)
    dev = sorted(random.Random(SEED).sample(pool, min(size, len(pool))))
    path = WORK / f"{name}-dev.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "label"])
        w.writerows((i, gold[i]) for i in dev)
    return path, dev, audit


def compare(base: Path, tuned: Path, dev: set[str], audit: set[str]) -> dict[str, Any]:
    s = RunStore.open(base)
    before, gold, labels = _ids_labels(s, raw=True), s.gold_labels(), s.task().label_names
    s.close()
    s = RunStore.open(tuned)
    after = _ids_labels(s, raw=False)
    s.close()
    out: dict[str, Any] = {"labels": list(labels)}
    for split, ids in (("held-out", [i for i in gold if i not in dev]), ("audit", sorted(audit & set(gold)))):
        row: dict[str, Any] = {"n": len(ids)}
        for when, pred in (("before", before), ("after", after)):
            a = agreement([gold[i] for i in ids], [pred.get(i) for i in ids], labels=labels, n_boot=2000, seed=SEED)
            row[when] = {
                "accuracy": a.accuracy.to_dict(),
                "macro_f1": a.f1_macro.to_dict(),
                "over_prediction": {c.label: c.over_prediction.to_dict() for c in a.per_class},
                "predicted": {c.label: c.predicted for c in a.per_class},
                "support": {c.label: c.support for c in a.per_class},
            }
        out[split] = row
    return out


async def _bench(task_path: Path, texts: list[str], n: int, rounds: int = 2) -> dict[str, float]:
    """labels/s fixed vs kNN: alternating rounds of n uncached items on one server (a throwaway cache)."""
    task = load_config(task_path)
    by = {c.strategy: c for c in candidates(task, strategies=("fixed", "knn"))}
    secs = {"fixed": 0.0, "knn": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Cache(Path(tmp) / "cache.sqlite")
        async with pipeline.open_backends(replace(task, members=(task.primary,))) as backends:
            backend = backends[task.primary.name]
            await label_texts(candidate_task(task, by["fixed"]), backend, cache, [("warm", texts[-1])])
            for r in range(rounds):
                for strategy in ("fixed", "knn"):
                    chunk = texts[(2 * r + (strategy == "knn")) * n :][:n]
                    _, spend = await label_texts(
                        candidate_task(task, by[strategy]),
                        backend,
                        cache,
                        [(f"{strategy}{i}", t) for i, t in enumerate(chunk)],
                    )
                    secs[strategy] += spend.seconds
        cache.close()
    return {s: rounds * n / v for s, v in secs.items()}


def _ci(e: dict[str, float], digits: int = 3) -> str:
    return f"{e['value']:.{digits}f} ({e['low']:.{digits}f}–{e['high']:.{digits}f})"


def table(name: str, cmp: dict[str, Any], minority: str | None) -> list[str]:
    lines = [
        f"### {name}",
        "",
        "| items | n | | macro-F1 | accuracy | over-prediction (predicted / true) |",
        "|---|---|---|---|---|---|",
    ]
    for split in ("held-out", "audit"):
        row = cmp[split]
        for when in ("before", "after"):
            m = row[when]
            labs = [minority] if minority else cmp["labels"]
            over = "; ".join(
                f"{lab} {_ci(m['over_prediction'][lab], 2)} [{m['predicted'][lab]}/{m['support'][lab]}]" for lab in labs
            )
            lines.append(f"| {split} | {row['n']} | {when} | {_ci(m['macro_f1'])} | {_ci(m['accuracy'])} | {over} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=list(DATASETS), action="append")
    ap.add_argument("--bench", type=int, default=0, help="also time fixed vs kNN examples: N items per round")
    ap.add_argument("--out", type=Path, default=ROOT / "eval" / "examples" / "quality_loop")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    md: list[str] = ["# The quality loop, measured (eval/quality_loop.py)", ""]
    results: dict[str, Any] = {}
    for name in args.only or list(DATASETS):
        spec = DATASETS[name]
        t0 = time.monotonic()
        base = base_run(name, spec)
        base_minutes = (time.monotonic() - t0) / 60
        dev_path, dev, audit = dev_sample(base, name, spec["dev"], spec["audit_fraction"])
        report = tune_run(
            base,
            dev=[(i, lab) for i, lab in _read_dev(dev_path)],
            variants=spec["variants"],
            strategies=spec["strategies"],
        )
        print(format_report(report), flush=True)
        stale = WORK / f"{name}-base-tuned"  # this script's own relabel of an earlier tuning: start afresh
        if stale.exists():  # (the answers come from the cache when the prompts are the same)
            shutil.rmtree(stale)
        relabeled = relabel_run(base, show_progress=False)
        print(format_relabel(relabeled), flush=True)
        cmp = compare(base, Path(relabeled["run_dir"]), set(dev), audit)
        res: dict[str, Any] = {
            "compare": cmp,
            "tune": {k: report[k] for k in ("items", "candidates", "scores", "chosen", "correction", "cost")},
            "relabel": relabeled,
            "base_minutes": base_minutes,
        }
        bench_file = WORK / f"bench-{name}.json"  # a measurement, kept: --bench again to redo it
        if args.bench:
            store = RunStore.open(base)
            texts = [r.text for r in store.item_rows() if r.id not in audit and r.id not in set(dev)]
            store.close()
            bench = asyncio.run(_bench(ROOT / spec["task"], texts, args.bench))
            bench_file.write_text(json.dumps({**bench, "items_per_round": args.bench}), encoding="utf-8")
        if bench_file.exists():
            res["bench"] = json.loads(bench_file.read_text(encoding="utf-8"))
        results[name] = res
        md += table(name, cmp, spec["minority"])
        md += ["", "```", format_report(report), format_relabel(relabeled), "```", ""]
        if "bench" in res:
            b = res["bench"]
            md.append(
                f"labels/s, fixed vs kNN examples, side by side: {b['fixed']:.2f} vs {b['knn']:.2f} "
                f"(kNN/fixed = {b['knn'] / b['fixed']:.2f})"
            )
        (args.out / "metrics.json").write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
        (args.out / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
        print("\n".join(table(name, cmp, spec["minority"])), flush=True)
    print(f"wrote {args.out / 'report.md'}")


def _read_dev(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8") as fh:
        return [(r["id"], r["label"]) for r in csv.DictReader(fh)]


if __name__ == "__main__":
    main()
