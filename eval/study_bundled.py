"""The cost/quality study on the bundled corpus (data/bbc_news, 300 BBC leads with their human topics).

1. a labeled run: `--run` (default runs/study-bbc); made with the embedded model if it does not exist
   (`labeler run tasks/news_topic.toml --run-dir runs/study-bbc`, a few minutes);
2. a reviewed copy (`--reviewed`, default runs/study-bbc-reviewed): the run routed under a budget
   (`labeler route`'s rules: low confidence, disagreement, failed, random audit) and the queue answered by
   simulated reviewers (the corpus's human label, wrong with probability --reviewer-error; a second reviewer
   on --second-share of the items), written as reviews, so the study has the review workflow's corrections;
3. `labeler study` on the reviewed copy, printing the strategy × budget table.

    python eval/study_bundled.py [--run DIR] [--budget 60] [--repeats 5] [--batch 10]
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from labeler.review.router import route_run
from labeler.store import RunStore
from labeler.store.rows import Review
from labeler.study.run import StudyOptions, study_run

ROOT = Path(__file__).resolve().parent.parent


def review(run: Path, *, budget: int, error: float, second_share: float, seed: int) -> int:
    """Route `run` and answer its queue with simulated reviewers; returns the number of reviews written."""
    route_run(run, max_items=budget, seed=seed)
    store = RunStore.open(run)
    try:
        gold = store.gold_labels()
        labels = list(store.task().label_names)
        rng = random.Random(seed)
        reviews = []
        for who, share in (("reviewer-a", 1.0), ("reviewer-b", second_share)):
            for e in store.queue():
                if rng.random() >= share or e.item_id not in gold:
                    continue
                truth = gold[e.item_id]
                said = rng.choice([x for x in labels if x != truth]) if rng.random() < error else truth
                reviews.append(Review(e.item_id, who, said, source="csv"))
        store.put_reviews(reviews)
    finally:
        store.close()
    return len(reviews)


def print_table(results: dict, *, budgets: list[int] | None = None) -> None:
    from labeler.study.render import f1, money
    from labeler.study.report import focus_ratio, table_budgets

    m = results
    sizes = m["schedule"]
    budgets = budgets or table_budgets(m)
    print(
        f"focus class: {m['data']['focus']} ({m['data']['focus_rule']}); "
        f"price per human label {money(m['prices']['price_per_label'])}"
    )
    print("strategy | " + " | ".join(f"{b} labels" for b in budgets))
    for name, c in m["curves"].items():
        cells = []
        for b in budgets:
            r = c["rounds"][sizes.index(b)]
            cells.append(f"{f1(r['f1_macro'])} · {f1(focus_ratio(m, r['per_class']))} · {money(r['dollars'])}")
        print(f"{name} | " + " | ".join(cells))
    print("\nstudent | labels | $ | macro-F1 | focus-class over-prediction")
    for a in m["arms"]:
        print(
            f"{a['key']} | {a['training_labels']} | {money(a['dollars'])} | {f1(a['f1_macro'])} | "
            f"{f1(focus_ratio(m, a['per_class']))}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=ROOT / "runs" / "study-bbc")
    ap.add_argument("--reviewed", type=Path, default=ROOT / "runs" / "study-bbc-reviewed")
    ap.add_argument("--budget", type=int, default=60, help="review budget (items)")
    ap.add_argument("--reviewer-error", type=float, default=0.05)
    ap.add_argument("--second-share", type=float, default=0.3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if not (a.run / "manifest.json").exists():
        cmd = [
            str(ROOT / ".venv" / "bin" / "labeler"),
            "run",
            str(ROOT / "tasks" / "news_topic.toml"),
            "--run-dir",
            str(a.run),
        ]
        print("labeling the bundled corpus with the embedded model: " + " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    if not (a.reviewed / "manifest.json").exists():
        shutil.copytree(a.run, a.reviewed, ignore=shutil.ignore_patterns("report", "study"))
        n = review(a.reviewed, budget=a.budget, error=a.reviewer_error, second_share=a.second_share, seed=a.seed)
        print(f"simulated review: {n} human labels written to {a.reviewed}")
    t0 = time.perf_counter()
    results, paths = study_run(a.reviewed, opts=StudyOptions(repeats=a.repeats, batch=a.batch, seed=a.seed))
    print(f"study: {time.perf_counter() - t0:.1f} s; report: {paths['report.md']}")
    print_table(results)


if __name__ == "__main__":
    sys.exit(main())
