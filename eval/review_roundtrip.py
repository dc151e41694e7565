"""The human review round trip on the bundled corpus, measured.

Copies a labeled run, routes it (low confidence, disagreement, failed, a 5% stratified random audit)
under a budget, exports the queue as the CSV reviewers fill in, fills it with simulated reviewers
(the corpus's human labels, with a set error rate; a second reviewer on a share of the items),
imports it back, merges, and prints how many items each rule sent to review and the final dataset's
accuracy against the held human labels, vs LLM-only.

    python eval/review_roundtrip.py RUN_DIR [--budget 60] [--reviewer-error 0.05] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import tempfile
from collections import Counter
from pathlib import Path

from labeler.review.importer import import_reviews
from labeler.review.merge import final_rows
from labeler.review.queue_export import export_queue
from labeler.review.router import route_run
from labeler.store import RunStore


def simulate(
    queue_csv: Path, out: Path, gold: dict[str, str], labels: list[str], *, error: float, second_share: float, seed: int
) -> None:
    rng = random.Random(seed)
    rows = list(csv.DictReader(queue_csv.open(encoding="utf-8")))
    with out.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        for who, share in (("reviewer-a", 1.0), ("reviewer-b", second_share)):
            for r in rows:
                if rng.random() >= share:
                    continue
                truth = gold[r["id"]]
                wrong = [lab for lab in labels if lab != truth]
                w.writerow({**r, "human_label": rng.choice(wrong) if rng.random() < error else truth, "reviewer": who})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--budget", type=int, default=60, help="human labels at most (items)")
    ap.add_argument("--reviewer-error", type=float, default=0.05)
    ap.add_argument("--second-share", type=float, default=0.3, help="share of items a second reviewer sees")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold", type=float, help="low-confidence threshold (default: the task's routing config)")
    ap.add_argument("--keep", type=Path, help="keep the reviewed copy of the run here (for `labeler eval`)")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="roundtrip-"))
    run = tmp / a.run_dir.name
    shutil.copytree(a.run_dir, run, ignore=shutil.ignore_patterns("report"))
    store = RunStore.open(run)
    store.clear_reviews_and_queue()
    gold = store.hold_out_gold()  # the corpus's human labels are the held truth, not reviews: take them out
    labels = list(store.task().label_names)
    store.close()

    plan, _ = route_run(run, max_items=a.budget, seed=a.seed, threshold=a.threshold)
    queue_csv = tmp / "queue.csv"
    export_queue(run, queue_csv, "csv")
    filled = tmp / "reviewed.csv"
    simulate(queue_csv, filled, gold, labels, error=a.reviewer_error, second_share=a.second_share, seed=a.seed)
    summary = import_reviews(run, filled, fmt="csv")

    store = RunStore.open(run)
    rows = list(final_rows(store))
    store.close()
    reasons = Counter(x for r in rows for x in json.loads(r["routing_reasons"]))
    rows = [r for r in rows if r["id"] in gold]
    n = len(rows)
    llm_acc = sum(r["llm_label"] == gold[r["id"]] for r in rows) / n
    final_acc = sum(r["label"] == gold[r["id"]] for r in rows) / n
    sources = Counter(r["source"] for r in rows)
    print(
        f"items: {n}; review budget: {a.budget}; queued: {len(plan.queue)}; "
        f"human labels imported: {summary.reviews} from {len(summary.reviewers)} reviewers on {summary.items} items"
    )
    print("routed by rule (an item may have several): " + ", ".join(f"{k} {v}" for k, v in reasons.most_common()))
    print("final label source: " + ", ".join(f"{k} {v}" for k, v in sources.most_common()))
    print(
        f"accuracy vs held human labels: LLM only {llm_acc:.3f} → LLM + review {final_acc:.3f} "
        f"(simulated reviewers err {a.reviewer_error:.0%})"
    )
    if a.keep:
        shutil.rmtree(a.keep, ignore_errors=True)
        shutil.move(str(run), a.keep)
        print(f"reviewed run: {a.keep}")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
