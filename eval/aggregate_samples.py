"""Self-consistency samples as annotators? eval/aggregate.py --samples measures two ways of counting them on
the BBC corpus, with one LLM member that draws S samples per item beside its greedy answer:

  (a) one annotator per member: `llm:A`, its greedy answer (what labeler.aggregate.collect reads), with the
      samples' vote shares as its distribution (what CROWDLAB takes when `consistency` is the first
      confidence method)
  (b) the samples as annotators of their own, `llm:A#1` .. `llm:A#S`, beside `llm:A`

How the samples are drawn: per item the model has one sampling distribution, whose mode (its greedy answer)
is drawn from the measured confusion matrix and carries a share q ~ beta(7.1, 2.9) (mean 0.71, the measured
confidence when right; the rest spread at random). Correlated: every sample is drawn from that one
distribution, so the samples share the item's error (a wrong mode is wrong in most samples). Independent
(for contrast): each sample's mode is drawn from the confusion matrix afresh, as if each sample were a
member of its own. The reviewers and scenarios are those of the single-label tables. CROWDLAB weighs the
reviewers against the model's distribution and takes no LLM annotators, so it is the same under (a) and
(b) (the vote shares are the distribution in both); only vote and Dawid–Skene are compared.
"""

from __future__ import annotations

import numpy as np
from aggregate_sim import REVIEWERS, Corpus, reviewed_pairs, reviewer

from labeler.aggregate import aggregate
from labeler.aggregate.table import Annotations

SAMPLES = 5  # [confidence] samples, the shipped default


def draws(truth: np.ndarray, cm: np.ndarray, samples: int, correlated: bool, rng: np.random.Generator) -> tuple:
    """(greedy answers (n,), samples (n, S), vote shares (n, K))."""
    n, k = len(truth), cm.shape[0]

    def sampling_dist() -> tuple[np.ndarray, np.ndarray]:
        mode = np.array([rng.choice(k, p=cm[t]) for t in truth])
        q = np.clip(rng.beta(7.1, 2.9, n), 1 / k + 0.01, 0.99)
        dist = rng.dirichlet(np.ones(k), n) * (1 - q)[:, None]
        dist[np.arange(n), mode] += q
        return mode, dist / dist.sum(axis=1, keepdims=True)

    greedy, dist = sampling_dist()
    out = np.zeros((n, samples), dtype=int)
    for s in range(samples):
        d = dist if correlated else sampling_dist()[1]
        out[:, s] = [rng.choice(k, p=d[i]) for i in range(n)]
    shares = np.stack([(out == c).mean(axis=1) for c in range(k)], axis=1)
    return greedy, out, shares


def annotations(corpus: Corpus, seed: int, share: float, correlated: bool, as_annotators: bool) -> tuple:
    rng = np.random.default_rng(seed)
    truth, labels = corpus.truth, corpus.labels
    n, k = len(truth), len(labels)
    who = reviewed_pairs(n, share, rng)
    cols, names = [], []
    for j, (name, acc) in enumerate(REVIEWERS.items()):
        bias = labels.index(corpus.bias) if name == "biased" else None
        cols.append(np.where(who[:, j], reviewer(truth, acc, bias, k, rng), -1))
        names.append(name)
    greedy, samples, shares = draws(truth, corpus.cm, SAMPLES, correlated, rng)
    cols.append(greedy)
    names.append("llm:A")
    if as_annotators:
        for s in range(SAMPLES):
            cols.append(samples[:, s])
            names.append(f"llm:A#{s + 1}")
    ann = Annotations(tuple(map(str, range(n))), tuple(names), tuple(labels), np.stack(cols, axis=1))
    return ann, shares, tuple(REVIEWERS)


def run(corpus: Corpus, seeds: int) -> None:
    methods = ["vote", "dawid_skene"]
    print(f"\nself-consistency samples ({corpus.name}, one member, greedy answer + {SAMPLES} samples): "
          "(a) one annotator per member, (b) each sample an annotator")
    print("| samples | scenario | " + " | ".join(f"{m} (a) | {m} (b)" for m in methods) + " | crowdlab (a = b) |")
    print("|---|---|" + "---|---|" * len(methods) + "---|")
    for correlated in (True, False):
        for title, share in (("every item, 2 of 3 reviewers", 1.0), ("30% of items reviewed (2 each)", 0.3)):
            acc: dict[str, list[float]] = {}
            for seed in range(seeds):
                for way in ("a", "b"):
                    ann, shares, humans = annotations(corpus, seed, share, correlated, way == "b")
                    for m in [*methods, *(["crowdlab"] if way == "a" else [])]:
                        c = aggregate(ann, m, probs=shares, humans=humans)
                        acc.setdefault(f"{m} {way}", []).append(float((c.label_index == corpus.truth).mean()))
            keys = [f"{m} {w}" for m in methods for w in "ab"] + ["crowdlab a"]
            cells = [f"{100 * np.mean(acc[x]):.1f}% (±{100 * np.std(acc[x]):.1f})" for x in keys]
            kind = "correlated" if correlated else "independent"
            print(f"| {kind} | {title} | " + " | ".join(cells) + " |")
