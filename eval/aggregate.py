"""Vote vs Dawid–Skene vs CROWDLAB (and GLAD, MACE with --all) on the bundled corpora: LLM members and
simulated reviewers of known quality, the consensus scored against the corpus's own labels.

    python eval/aggregate.py [--corpus all|bbc|spam|entity_kinds] [--seeds 20] [--all] [--cli] [--run RUN_DIR]
    python eval/aggregate.py --samples [--seeds 20]     # self-consistency samples as annotators, (a) vs (b)

One table per corpus (all three by default). bbc: data/bbc_news/items.csv (300 BBC News items, 5 topics;
tasks/news_topic.toml). spam: data/spam_assassin/items.csv (400 emails, 30% spam; tasks/spam.toml), twice: with the
tuned task's matrix and with the untuned one's (as shipped, it calls 84% of the emails spam).
entity_kinds: data/conll2003_kinds (240 sentences, multi-label; eval/aggregate_multi.py says how).

The two LLM members of the single-label corpora are simulated from the embedded model's measured confusion
matrix on the corpus (eval/aggregate_sim.py says where each comes from), each member drawing its answers
independently; running the model twice more on 2 shared cores was too slow for this. Each member's
distribution is a confidence drawn around the measured means, the rest spread at random; the combined
distribution (CROWDLAB's model) is the members' mean.

With --run RUN_DIR (a run of the corpus's task, e.g. the one `./run.sh example` writes for bbc), the LLM
member is instead the embedded model's real answers and logprob distributions read from that run's store
(one member, as the bundled tasks have), and only the reviewers are simulated.

Reviewers: "careful" (95% right), "hurried" (85%) and "biased" (75%; 80% of its errors say business on BBC;
on spam 80% of its errors let spam through as ham). Scenarios: every item answered by 2 of the 3 reviewers;
or only 30% of the items reviewed (2 reviewers each), the rest LLM members alone. Accuracy is the mean
over seeds (and its standard deviation).

With --cli, seed 0 of the second scenario on bbc also goes through a run store and the command line
(`labeler export --consensus METHOD` for each method, then `labeler review status`), which must give the
same accuracies. --samples: eval/aggregate_samples.py.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aggregate_multi  # noqa: E402
import aggregate_samples  # noqa: E402
from aggregate_sim import Corpus, bbc, scenario, spam  # noqa: E402

from labeler.aggregate import aggregate  # noqa: E402

CORPORA = {"bbc": bbc, "spam": spam}


def real_member(run_dir: Path, corpus: Corpus) -> tuple[np.ndarray, np.ndarray]:
    """The embedded model's answers (label index, -1 where it failed) and distributions from a stored run, in the
    corpus's order."""
    from labeler.store import RunStore

    labels = corpus.labels
    with corpus.csv.open(encoding="utf-8") as fh:
        order = [r["id"] for r in csv.DictReader(fh)]
    k = len(labels)
    got: dict[str, tuple[int, np.ndarray]] = {}
    store = RunStore.open(run_dir)
    try:
        for row in store.item_rows():
            r = next(iter(row.results.values()), None)
            if r is None or r.status != "labeled" or r.label not in labels:
                continue
            d = next(iter(r.distributions.values()), {}) or {r.label: 1.0}
            dist = np.array([float(d.get(lab, 0.0)) for lab in labels]) + 1e-6
            got[row.id] = (labels.index(r.label), dist / dist.sum())
    finally:
        store.close()
    answers = np.array([got[i][0] if i in got else -1 for i in order])
    dists = np.stack([got[i][1] if i in got else np.full(k, 1 / k) for i in order])
    return answers, dists


def through_the_cli(corpus: Corpus, methods: list[str]) -> None:
    """Seed 0 of the 30% scenario written into a run store, then `labeler export --consensus` per method."""
    import tempfile

    from labeler.cli import main as cli
    from labeler.confidence.run import combine_run
    from labeler.config import load_config
    from labeler.inputs import Row
    from labeler.store import RunStore
    from labeler.store.rows import Review
    from labeler.types import Item, ItemResult

    with (ROOT / "data/bbc_news/items.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    labels = corpus.labels
    ann, _, _, dists = scenario(corpus, 0, 0.3)
    task = load_config(ROOT / "tasks/news_topic.toml", env={})
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        members = ["A", "B"]
        manifest = {
            "run_id": "aggregate-eval", "labels": labels, "config_path": str(task.path), "config": dict(task.raw),
            "members": [{"name": m, "template_hash": "sim", "endpoint": {"model": "simulated"}} for m in members],
        }
        store = RunStore.create(run_dir, manifest)
        store.ingest([Row(Item(r["id"], r["text"], k + 1)) for k, r in enumerate(rows)], members=members)
        reviews = []
        for i, r in enumerate(rows):
            for j, name in enumerate(ann.annotators):
                k = int(ann.labels[i, j])
                if k < 0:
                    continue
                if name.startswith("llm:"):
                    dist = dict(zip(labels, map(float, dists[members.index(name[4:])][i]), strict=True))
                    store.put_result(
                        ItemResult(r["id"], name[4:], "labeled", label=labels[k], confidence=dist[labels[k]],
                                   distributions={"logprob": dist})
                    )
                else:
                    reviews.append(Review(r["id"], name, labels[k], source="simulated"))
        store.put_reviews(reviews)
        combine_run(store, task)
        store.close()
        gold = {r["id"]: r["label"] for r in rows}
        for m in methods:
            out = Path(tmp) / f"{m}.jsonl"
            cli(["export", str(run_dir), "--out", str(out), "--consensus", m])
            got = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
            print(f"  through the CLI, seed 0: {m} {100 * np.mean([g['label'] == gold[g['id']] for g in got]):.1f}%")
        cli(["review", "status", str(run_dir)])


def single(corpus: Corpus, methods: list[str], seeds: int, real: tuple[np.ndarray, np.ndarray] | None) -> None:
    truth = corpus.truth
    who = "the LLM member is the embedded model's answers" if real is not None else (
        "LLM members simulated from the measured confusion matrix"
    )
    print(f"\n{corpus.name}: {len(truth)} items, {len(corpus.labels)} labels; {who}")
    print("| scenario | LLM member alone | LLM distribution alone | " + " | ".join(methods) + " |")
    print("|---|---|---|" + "---|" * len(methods))
    for title, share in (("every item, 2 of 3 reviewers", 1.0), ("30% of items reviewed (2 each)", 0.3)):
        acc: dict[str, list[float]] = {m: [] for m in methods}
        alone, dist, secs = [], [], dict.fromkeys(methods, 0.0)
        for seed in range(seeds):
            ann, probs, humans, _ = scenario(corpus, seed, share, real)
            alone.append(float((ann.labels[:, ann.annotators.index("llm:A")] == truth).mean()))
            dist.append(float((probs.argmax(axis=1) == truth).mean()))
            for m in methods:
                t = time.perf_counter()
                c = aggregate(ann, m, probs=probs, humans=humans)
                secs[m] += time.perf_counter() - t
                acc[m].append(float((c.label_index == truth).mean()))
        cells = [f"{100 * np.mean(acc[m]):.1f}% (±{100 * np.std(acc[m]):.1f})" for m in methods]
        print(f"| {title} | {100 * np.mean(alone):.1f}% | {100 * np.mean(dist):.1f}% | " + " | ".join(cells) + " |")
        print("  seconds per fit: " + ", ".join(f"{m} {secs[m] / seeds:.2f}" for m in methods), file=sys.stderr)
        if share < 1.0:
            print("  seed 0: " + ", ".join(f"{m} {100 * acc[m][0]:.1f}%" for m in methods))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", choices=["all", *CORPORA, "entity_kinds"], default="all")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--all", action="store_true", help="also GLAD and MACE (crowd-kit; slow)")
    ap.add_argument("--cli", action="store_true", help="also seed 0 on bbc through a run store and the command line")
    ap.add_argument("--run", type=Path, help="the LLM member's real answers from this run of the corpus's task")
    ap.add_argument("--samples", action="store_true", help="self-consistency samples as annotators: (a) vs (b)")
    args = ap.parse_args()
    if args.samples:
        aggregate_samples.run(bbc(), args.seeds)
        return
    if args.run and args.corpus not in CORPORA:
        ap.error("--run needs --corpus bbc or --corpus spam")
    methods = ["vote", "dawid_skene", "crowdlab"] + (["glad", "mace"] if args.all else [])
    for name in [*CORPORA, "entity_kinds"] if args.corpus == "all" else [args.corpus]:
        if name == "entity_kinds":
            aggregate_multi.run(methods, args.seeds)
            continue
        for corpus in [bbc()] if name == "bbc" else ([spam()] if args.run else [spam("after"), spam("before")]):
            single(corpus, methods, args.seeds, real_member(args.run, corpus) if args.run else None)
            if args.cli and not args.run and name == "bbc":
                through_the_cli(corpus, methods)


if __name__ == "__main__":
    main()
