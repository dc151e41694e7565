"""eval/aggregate.py on the multi-label corpus: data/conll2003_kinds (240 sentences; the kinds of names the
CoNLL-2003 annotators marked in each: person, organization, location, misc; task prompts/entity_kinds).

Every label is aggregated as its own yes/no question (labeler.aggregate.multilabel); the consensus sets are
scored against the corpus's sets by micro-F1 (over all item x label decisions) and subset accuracy (the
whole set right).

Per-label error models, each decision drawn independently:
  LLM members A, B   say yes to a present kind 98% of the time, and to an absent one 90%: the embedded model
                     named all four kinds for every one of 40 measured items (README "Task types": recall
                     1.00), so a member that carries a little information is the most this corpus allows.
                     Its p(yes) for CROWDLAB is a confidence around its answer (as for the single-label
                     members: beta(7.1, 2.9) when right, beta(5, 5) when wrong, mapped onto [0.5, 1]).
  careful            misses a present kind 5% of the time, adds an absent one 2%
  hurried            misses 15%, adds 8%
  biased             misses 20%, adds 5%, and ticks misc on 60% of the items without it
Scenarios as on the single-label corpora: every item 2 of the 3 reviewers, or 30% of the items.
"""

from __future__ import annotations

import csv

import numpy as np
from aggregate_sim import ROOT, reviewed_pairs

from labeler.aggregate.multilabel import aggregate_multilabel

LABELS = ("person", "organization", "location", "misc")
MEMBER = (0.98, 0.90)  # P(yes | present), P(yes | absent)
REVIEWERS = {"careful": (0.95, 0.02, None), "hurried": (0.85, 0.08, None), "biased": (0.80, 0.05, "misc")}
BIAS_ADD = 0.6


def load() -> np.ndarray:
    """(n, L) bool: the corpus's label sets."""
    with (ROOT / "data/conll2003_kinds/items.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return np.array([[lab in r["label"].split(";") for lab in LABELS] for r in rows])


def _decide(truth: np.ndarray, hit: float, add: float, rng: np.random.Generator) -> np.ndarray:
    return np.where(truth, rng.random(truth.shape) < hit, rng.random(truth.shape) < add)


def member(truth: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(answers (n, L) bool, p(yes) (n, L))."""
    said = _decide(truth, *MEMBER, rng)
    right = said == truth
    conf = 0.5 + 0.5 * np.where(right, rng.beta(7.1, 2.9, truth.shape), rng.beta(5, 5, truth.shape))
    conf = np.clip(conf, 0.51, 0.99)
    return said, np.where(said, conf, 1 - conf)


def scenario(truth: np.ndarray, seed: int, share: float) -> tuple[list, np.ndarray, tuple[str, ...]]:
    """(item, annotator, label set) triples, the members' mean p(yes) (n, L), the reviewers' names."""
    rng = np.random.default_rng(seed)
    n = len(truth)
    who = reviewed_pairs(n, share, rng)
    triples = []
    for j, (name, (hit, add, bias)) in enumerate(REVIEWERS.items()):
        said = _decide(truth, hit, add, rng)
        if bias is not None:
            b = LABELS.index(bias)
            said[:, b] |= ~truth[:, b] & (rng.random(n) < BIAS_ADD)
        triples += [(str(i), name, _names(said[i])) for i in range(n) if who[i, j]]
    p_yes = []
    for name in ("llm:A", "llm:B"):
        said, p = member(truth, rng)
        triples += [(str(i), name, _names(said[i])) for i in range(n)]
        p_yes.append(p)
    return triples, np.mean(p_yes, axis=0), tuple(REVIEWERS)


def _names(row: np.ndarray) -> tuple[str, ...]:
    return tuple(lab for lab, yes in zip(LABELS, row, strict=True) if yes)


def scores(got: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(micro-F1, subset accuracy) of (n, L) bool sets."""
    from sklearn.metrics import f1_score

    return float(f1_score(truth, got, average="micro")), float((got == truth).all(axis=1).mean())


def consensus_sets(triples: list, p_yes: np.ndarray, humans: tuple[str, ...], method: str, n: int) -> np.ndarray:
    items = tuple(map(str, range(n)))
    probs = {lab: p_yes[:, j] for j, lab in enumerate(LABELS)} if method == "crowdlab" else None
    c = aggregate_multilabel(triples, LABELS, method, items=items, probs=probs, humans=humans)
    return np.array([[lab in s for lab in LABELS] for s in c.label_sets])


def member_alone(triples: list, n: int) -> np.ndarray:
    sets = {i: s for i, a, s in triples if a == "llm:A"}
    return np.array([[lab in sets[str(i)] for lab in LABELS] for i in range(n)])


def run(methods: list[str], seeds: int) -> None:
    truth = load()
    n = len(truth)
    print(f"\nentity_kinds: {n} items, {len(LABELS)} labels (multi-label, aggregated per label); LLM members "
          f"simulated: yes to a present kind {MEMBER[0]:.0%}, to an absent one {MEMBER[1]:.0%}")
    print("| scenario | score | LLM member alone | LLM p(yes) ≥ 0.5 alone | " + " | ".join(methods) + " |")
    print("|---|---|---|---|" + "---|" * len(methods))
    for title, share in (("every item, 2 of 3 reviewers", 1.0), ("30% of items reviewed (2 each)", 0.3)):
        every = [*methods, "alone", "p_yes"]
        f1: dict[str, list[float]] = {m: [] for m in every}
        subset: dict[str, list[float]] = {m: [] for m in every}
        for seed in range(seeds):
            triples, p_yes, humans = scenario(truth, seed, share)
            for m in every:
                if m in methods:
                    got = consensus_sets(triples, p_yes, humans, m, n)
                else:
                    got = member_alone(triples, n) if m == "alone" else p_yes >= 0.5
                a, b = scores(got, truth)
                f1[m].append(a)
                subset[m].append(b)
        for label, d, scale in (("micro-F1", f1, 1.0), ("subset accuracy", subset, 100.0)):
            unit = "%" if scale == 100.0 else ""
            fmt = "{:.1f}" if scale == 100.0 else "{:.3f}"
            cells = [
                f"{fmt.format(scale * np.mean(d[m]))}{unit} (±{fmt.format(scale * np.std(d[m]))})" for m in methods
            ]
            alone = " | ".join(f"{fmt.format(scale * np.mean(d[x]))}{unit}" for x in ("alone", "p_yes"))
            print(f"| {title} | {label} | {alone} | " + " | ".join(cells) + " |")

