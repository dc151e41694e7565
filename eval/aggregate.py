"""Vote vs Dawid–Skene vs CROWDLAB (and GLAD, MACE with --all) on the bundled corpus: LLM members and
simulated reviewers of known quality, the consensus scored against the corpus's own labels.

    python eval/aggregate.py [--seeds 20] [--all] [--cli] [--run RUN_DIR]

With --cli, seed 0 of the second scenario also goes through a run store and the command line (`labeler
export --consensus METHOD` for each method, then `labeler review status`), which must give the same accuracies.

The corpus is data/bbc_news/items.csv (300 BBC News items, 5 topics; task tasks/news_topic.toml). The two
LLM members are simulated from the embedded model's measured confusion matrix on this corpus
(eval/examples/news_topic/metrics.json: 84% accuracy, politics filed under business), each member drawing
its answers independently; running the model twice more on 2 shared cores was too slow for this. Each
member's distribution is a confidence drawn around the measured means (0.71 when right, 0.50 when
wrong), the rest spread at random; the combined distribution (CROWDLAB's model) is the members' mean.

With --run RUN_DIR (a run of tasks/news_topic.toml, e.g. the one `./run.sh example` writes), the LLM member
is instead the embedded model's real answers and logprob distributions read from that run's store (one
member, as the bundled task has), and only the reviewers are simulated.

Reviewers: "careful" (95% right), "hurried" (85%) and "biased" (75%; 80% of its errors say business).
Scenarios: every item answered by 2 of the 3 reviewers; or only 30% of the items reviewed (2 reviewers
each), the rest LLM members alone. Accuracy is the mean over seeds (and its standard deviation).
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

from labeler.aggregate import aggregate  # noqa: E402
from labeler.aggregate.table import Annotations  # noqa: E402

REVIEWERS = {"careful": (0.95, None), "hurried": (0.85, None), "biased": (0.75, "business")}


def load() -> tuple[list[str], np.ndarray, np.ndarray]:
    with (ROOT / "data/bbc_news/items.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    m = json.loads((ROOT / "eval/examples/news_topic/metrics.json").read_text(encoding="utf-8"))
    labels = [lab for lab in m["confusion"]["labels"] if lab != "(no label)"]
    k = len(labels)
    counts = np.array(m["confusion"]["counts"], dtype=float)[:k, :k] + 0.1  # the failed column is empty
    cm = counts / counts.sum(axis=1, keepdims=True)
    truth = np.array([labels.index(r["label"]) for r in rows])
    return labels, truth, cm


def llm_member(truth: np.ndarray, cm: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n, k = len(truth), cm.shape[0]
    answer = np.array([rng.choice(k, p=cm[t]) for t in truth])
    right = answer == truth
    conf = np.clip(np.where(right, rng.beta(7.1, 2.9, n), rng.beta(5, 5, n)), 1 / k + 0.01, 0.99)
    rest = rng.dirichlet(np.ones(k - 1), n)
    dist = np.zeros((n, k))
    for i in range(n):
        others = [c for c in range(k) if c != answer[i]]
        dist[i, others] = rest[i] * (1 - conf[i])
        dist[i, answer[i]] = conf[i]
    return answer, dist


def reviewer(truth: np.ndarray, acc: float, bias: int | None, k: int, rng: np.random.Generator) -> np.ndarray:
    out = truth.copy()
    for i, t in enumerate(truth):
        if rng.random() >= acc:
            wrong = [c for c in range(k) if c != t]
            out[i] = bias if bias is not None and bias != t and rng.random() < 0.8 else rng.choice(wrong)
    return out


def real_member(run_dir: Path, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The embedded model's answers (label index, -1 where it failed) and distributions from a stored run, in the
    corpus's order."""
    from labeler.store import RunStore

    with (ROOT / "data/bbc_news/items.csv").open(encoding="utf-8") as fh:
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


REAL: tuple[np.ndarray, np.ndarray] | None = None  # set by --run: the embedded model's own answers


def scenario(labels: list[str], truth: np.ndarray, cm: np.ndarray, seed: int, share: float) -> tuple:
    rng = np.random.default_rng(seed)
    n, k = len(truth), len(labels)
    cols, names = [], []
    reviewed = rng.random(n) < share
    pairs = [rng.choice(3, size=2, replace=False) for _ in range(n)]
    for j, (name, (acc, bias)) in enumerate(REVIEWERS.items()):
        ans = reviewer(truth, acc, None if bias is None else labels.index(bias), k, rng)
        keep = reviewed & np.array([j in p for p in pairs])
        cols.append(np.where(keep, ans, -1))
        names.append(name)
    dists = []
    for name in ("llm:A",) if REAL is not None else ("llm:A", "llm:B"):
        ans, dist = REAL if REAL is not None else llm_member(truth, cm, rng)
        cols.append(ans)
        names.append(name)
        dists.append(dist)
    ann = Annotations(tuple(map(str, range(n))), tuple(names), tuple(labels), np.stack(cols, axis=1))
    return ann, np.mean(dists, axis=0), tuple(REVIEWERS), dists


def through_the_cli(labels: list[str], truth: np.ndarray, cm: np.ndarray, methods: list[str]) -> None:
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
    ann, _, _, dists = scenario(labels, truth, cm, 0, 0.3)
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--all", action="store_true", help="also GLAD and MACE (crowd-kit; slow)")
    ap.add_argument("--cli", action="store_true", help="also seed 0 through a run store and the command line")
    ap.add_argument("--run", type=Path, help="the LLM member's real answers from this run of tasks/news_topic.toml")
    args = ap.parse_args()
    labels, truth, cm = load()
    methods = ["vote", "dawid_skene", "crowdlab"] + (["glad", "mace"] if args.all else [])
    if args.run:
        global REAL
        REAL = real_member(args.run, labels)
        print(f"{len(truth)} items, {len(labels)} labels; the LLM member is the embedded model's answers in {args.run}")
    else:
        print(f"{len(truth)} items, {len(labels)} labels; LLM members simulated from the measured confusion matrix")
    print("| scenario | LLM member alone | " + " | ".join(methods) + " |")
    print("|---|---|" + "---|" * len(methods))
    for title, share in (("every item, 2 of 3 reviewers", 1.0), ("30% of items reviewed (2 each)", 0.3)):
        acc: dict[str, list[float]] = {m: [] for m in methods}
        alone, secs = [], dict.fromkeys(methods, 0.0)
        for seed in range(args.seeds):
            ann, probs, humans, _ = scenario(labels, truth, cm, seed, share)
            alone.append(float((ann.labels[:, ann.annotators.index("llm:A")] == truth).mean()))
            for m in methods:
                t = time.perf_counter()
                c = aggregate(ann, m, probs=probs, humans=humans)
                secs[m] += time.perf_counter() - t
                acc[m].append(float((c.label_index == truth).mean()))
        cells = [f"{100 * np.mean(acc[m]):.1f}% (±{100 * np.std(acc[m]):.1f})" for m in methods]
        print(f"| {title} | {100 * np.mean(alone):.1f}% | " + " | ".join(cells) + " |")
        print("  seconds per fit: " + ", ".join(f"{m} {secs[m] / args.seeds:.2f}" for m in methods), file=sys.stderr)
        if share < 1.0:
            print("  seed 0: " + ", ".join(f"{m} {100 * acc[m][0]:.1f}%" for m in methods))
    if args.cli and REAL is None:
        through_the_cli(labels, truth, cm, methods)


if __name__ == "__main__":
    main()
