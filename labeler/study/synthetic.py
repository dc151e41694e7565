"""A synthetic pool whose answer is known: for tests and for timing the study without a model.

Each text is `noise` words drawn from a vocabulary of filler words, plus signal words:
    easy items (1 − hard_share): `cue` words from their own class's cue set
    hard items (hard_share):     two cue words of their own class and two of another class, so the cues
                                 tie, and one "decider" word of their own class; deciders occur only in
                                 hard items
A student learns the easy items from a few labels; the hard ones need labels of hard items, which random
sampling meets at the rate `hard_share` and uncertainty sampling seeks out. The label is a known function
of the words, so a perfect classifier exists.

An optional simulated LLM labels every item right except that it files a share `llm_skew` of the hard
items of every class under class 0 (over-predicting it), with a confidence that is lower on hard items.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from labeler.study.data import Prices, StudyData, from_arrays


def synthetic_texts(
    n: int,
    *,
    k: int = 3,
    hard_share: float = 0.3,
    noise: int = 12,
    vocabulary: int = 400,
    cue: int = 3,
    seed: int = 0,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(texts, labels (n,) ints 0..k-1, hard (n,) bool)."""
    rng = np.random.default_rng(seed)
    filler = [f"w{i}" for i in range(vocabulary)]
    cues = [[f"c{c}x{j}" for j in range(5)] for c in range(k)]
    deciders = [[f"d{c}x{j}" for j in range(3)] for c in range(k)]
    y = rng.integers(0, k, size=n)
    hard = rng.random(n) < hard_share
    texts = []
    for label, h in zip(y, hard, strict=True):
        words = list(rng.choice(filler, size=noise))
        if h:
            other = (label + 1 + rng.integers(0, k - 1)) % k
            words += list(rng.choice(cues[label], 2, replace=False)) + list(rng.choice(cues[other], 2, replace=False))
            words.append(str(rng.choice(deciders[label])))
        else:
            words += list(rng.choice(cues[label], cue, replace=False))
        rng.shuffle(words)
        texts.append(" ".join(words))
    return texts, y, hard


def synthetic_study(
    n: int,
    *,
    k: int = 3,
    hard_share: float = 0.3,
    seed: int = 0,
    llm_skew: float | None = 0.6,
    price_per_label: float = 0.10,
    llm_cost: float = 1.0,
    review_labels: int = 0,
    test_fraction: float = 0.3,
) -> StudyData:
    """StudyData for a synthetic pool of n items (labels "l0".."l{k-1}"), split seeded by `seed`."""
    texts, y, hard = synthetic_texts(n, k=k, hard_share=hard_share, seed=seed)
    labels = [f"l{c}" for c in range(k)]
    rng = np.random.default_rng(seed + 1)
    llm: Sequence[str | None] | None = None
    conf: Sequence[float | None] | None = None
    if llm_skew is not None:
        wrong = hard & (rng.random(n) < llm_skew)
        llm = [labels[0] if w else labels[c] for c, w in zip(y, wrong, strict=True)]
        conf = [float(rng.uniform(0.4, 0.8)) if h else float(rng.uniform(0.7, 1.0)) for h in hard]
    prices = Prices(
        price_per_label=price_per_label,
        llm_cost=llm_cost if llm_skew is not None else 0.0,
        llm_source="synthetic",
        input_tokens=0,
        output_tokens=0,
        review_labels=review_labels,
        list_price=None,
    )
    return from_arrays(
        [f"s{i:05d}" for i in range(n)],
        texts,
        [labels[c] for c in y],
        labels=labels,
        llm=llm,
        confidence=conf,
        prices=prices,
        test_fraction=test_fraction,
        seed=seed,
        confidence_source="synthetic" if llm_skew is not None else "none",
    )
