"""Simulated annotators for eval/aggregate.py on the single-label corpora (BBC News, SpamAssassin).

    Corpus        a corpus's labels, its items' true labels, the embedded model's confusion matrix on it
    llm_member    an LLM member's answers drawn from that matrix, with a confidence distribution per item
    reviewer      a simulated reviewer of given accuracy, optionally class-biased
    scenario      one seed: reviewers on a share of the items (2 of 3 each), LLM members on every item

BBC: the matrix is the embedded model's measured one (eval/examples/news_topic/metrics.json, 84%). Spam: the
spam task's held-out results (eval/examples/quality_loop/metrics.json, 300 items): for two classes accuracy
and the two margins fix the matrix. Tuned ("after": 88.3% right, 88 called spam of 91): 72 spam and 193 ham
right, 19 spam called ham, 16 ham called spam. As shipped ("before": 43.3%, 251 called spam): 86 spam and
44 ham right, 5 spam called ham, 165 ham called spam. A member's confidence in its answer is drawn around the
BBC run's measured means (0.71 when right, 0.50 when wrong, beta(7.1, 2.9) and beta(5, 5)); on two classes
that range is mapped onto [0.5, 1] (0.5 + 0.5 beta), since a two-class answer has at least half the mass.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labeler.aggregate.table import Annotations

ROOT = Path(__file__).resolve().parents[1]
REVIEWERS = {"careful": 0.95, "hurried": 0.85, "biased": 0.75}
BIAS_SHARE = 0.8  # of the biased reviewer's errors, the share that says its favourite label


@dataclass(frozen=True)
class Corpus:
    name: str
    csv: Path
    labels: list[str]
    truth: np.ndarray  # (n,) class index
    cm: np.ndarray  # (K, K) the embedded model's confusion matrix, row = true class
    bias: str  # the biased reviewer's favourite label


def _truth(path: Path, labels: list[str]) -> np.ndarray:
    with path.open(encoding="utf-8") as fh:
        return np.array([labels.index(r["label"]) for r in csv.DictReader(fh)])


def bbc() -> Corpus:
    m = json.loads((ROOT / "eval/examples/news_topic/metrics.json").read_text(encoding="utf-8"))
    labels = [lab for lab in m["confusion"]["labels"] if lab != "(no label)"]
    k = len(labels)
    counts = np.array(m["confusion"]["counts"], dtype=float)[:k, :k] + 0.1  # the failed column is empty
    path = ROOT / "data/bbc_news/items.csv"
    return Corpus("bbc", path, labels, _truth(path, labels), counts / counts.sum(axis=1, keepdims=True), "business")


def spam(stage: str = "after") -> Corpus:
    """`stage` "after": the tuned task (88% right); "before": tasks/spam.toml as shipped (43% right, 84% of
    the emails called spam)."""
    m = json.loads((ROOT / "eval/examples/quality_loop/metrics.json").read_text(encoding="utf-8"))
    after = m["spam"]["compare"]["held-out"][stage]
    labels = list(m["spam"]["compare"]["labels"])  # ["spam", "ham"]
    n = sum(after["support"].values())
    right = round(after["accuracy"]["value"] * n)
    said, true = after["predicted"]["spam"], after["support"]["spam"]
    tp = (right - after["support"]["ham"] + said) // 2  # right = tp + tn, tn = ham - (said - tp)
    counts = np.array([[tp, true - tp], [said - tp, after["support"]["ham"] - said + tp]], dtype=float)
    path = ROOT / "data/spam_assassin/items.csv"
    name = "spam (tuned)" if stage == "after" else "spam (as shipped, untuned)"
    return Corpus(name, path, labels, _truth(path, labels), counts / counts.sum(axis=1, keepdims=True), "ham")


def llm_member(truth: np.ndarray, cm: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(answers (n,), distributions (n, K)): answers drawn from `cm` independently per item."""
    n, k = len(truth), cm.shape[0]
    answer = np.array([rng.choice(k, p=cm[t]) for t in truth])
    right = answer == truth
    draw = np.where(right, rng.beta(7.1, 2.9, n), rng.beta(5, 5, n))
    conf = 0.5 + 0.5 * draw if k == 2 else draw
    conf = np.clip(conf, 1 / k + 0.01, 0.99)
    rest = rng.dirichlet(np.ones(k - 1), n)
    dist = np.zeros((n, k))
    for i in range(n):
        others = [c for c in range(k) if c != answer[i]]
        dist[i, others] = rest[i] * (1 - conf[i])
        dist[i, answer[i]] = conf[i]
    return answer, dist


def reviewer(truth: np.ndarray, acc: float, bias: int | None, k: int, rng: np.random.Generator) -> np.ndarray:
    """Right with probability `acc`. On more than two classes, BIAS_SHARE of its errors say `bias`. On two
    classes an error can only say the other class, so the bias is in where it errs: BIAS_SHARE of its errors
    fall on items of the class it does not favour (the biased spam reviewer lets spam through as ham)."""
    out = truth.copy()
    if k == 2 and bias is not None:
        other = truth != bias
        p_wrong = np.where(
            other, BIAS_SHARE * (1 - acc) / other.mean(), (1 - BIAS_SHARE) * (1 - acc) / (1 - other.mean())
        )
        flip = rng.random(len(truth)) < np.clip(p_wrong, 0, 1)
        return np.where(flip, 1 - truth, truth)
    for i, t in enumerate(truth):
        if rng.random() >= acc:
            wrong = [c for c in range(k) if c != t]
            out[i] = bias if bias is not None and bias != t and rng.random() < BIAS_SHARE else rng.choice(wrong)
    return out


def reviewed_pairs(n: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) bool: which of the 3 reviewers answer each item (2 of them, on a `share` of the items)."""
    reviewed = rng.random(n) < share
    pairs = [rng.choice(3, size=2, replace=False) for _ in range(n)]
    return np.array([[reviewed[i] and j in p for j in range(3)] for i, p in enumerate(pairs)])


def scenario(
    corpus: Corpus, seed: int, share: float, real: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[Annotations, np.ndarray, tuple[str, ...], list[np.ndarray]]:
    """One seed: (annotations, the LLM's mean distribution (n, K), the reviewers' names, each member's
    distributions). `real` (answers, distributions) replaces the two simulated members by one real one."""
    rng = np.random.default_rng(seed)
    truth, labels = corpus.truth, corpus.labels
    n, k = len(truth), len(labels)
    who = reviewed_pairs(n, share, rng)
    cols, names = [], []
    for j, (name, acc) in enumerate(REVIEWERS.items()):
        bias = labels.index(corpus.bias) if name == "biased" else None
        cols.append(np.where(who[:, j], reviewer(truth, acc, bias, k, rng), -1))
        names.append(name)
    dists = []
    for name in ("llm:A",) if real is not None else ("llm:A", "llm:B"):
        ans, dist = real if real is not None else llm_member(truth, corpus.cm, rng)
        cols.append(ans)
        names.append(name)
        dists.append(dist)
    ann = Annotations(tuple(map(str, range(n))), tuple(names), tuple(labels), np.stack(cols, axis=1))
    return ann, np.mean(dists, axis=0), tuple(REVIEWERS), dists
