"""The study's data: the pool of items, the test split (drawn first), the oracle, the LLM's labels and the prices.

The test split is a function of the item id and the seed only: item i is a test item when it has a human
label and u(seed, i) < test_fraction, with u a uniform number from a hash of (seed, id). So it is drawn
before anything else happens, it does not move when more items get human labels (the live picker keeps
excluding the same items), and nothing downstream can reach it: `StudyData` keeps the test items in their
own arrays, and the pool arrays that strategies, students and vectorisers see never contain one.

Labels are encoded as integers 0..K-1 in the task's label order; -1 means "no label".

Prices. Human labels cost `price_per_label` each (the task's `review.price_per_label` unless overridden).
The LLM's cost is the run's recorded cost of the pool items; when that is zero (a local, free model) the
run's token counts are priced at a named provider's list price (default gpt-4o-mini, $0.15 in / $0.60 out
per 1M tokens). The review workflow's cost is its human votes on pool items times the price per label.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from labeler.errors import StudyError

if TYPE_CHECKING:
    from labeler.humans import HumanLabel

NO_LABEL = -1
REVIEW_SOURCES = ("human", "adjudicated")


@dataclass(frozen=True)
class ListPrice:
    """A provider's list price per 1M tokens, used when the run itself cost nothing."""

    name: str = "gpt-4o-mini"
    input_per_1m: float = 0.15
    output_per_1m: float = 0.60

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_1m + output_tokens * self.output_per_1m) / 1e6


@dataclass(frozen=True)
class Prices:
    """What the pool's labels cost. `llm_source` says where the LLM dollars come from, in words."""

    price_per_label: float
    llm_cost: float
    llm_source: str
    input_tokens: int
    output_tokens: int
    review_labels: int  # human votes the review workflow spent on pool items
    list_price: ListPrice | None  # set when the LLM dollars are a list price applied to the run's tokens

    @property
    def review_cost(self) -> float:
        return self.review_labels * self.price_per_label

    @property
    def llm_plus_review(self) -> float:
        return self.llm_cost + self.review_cost

    def equal_labels(self, dollars: float) -> int:
        """Human labels that `dollars` buy: n·price <= dollars < (n + 1)·price."""
        return int(np.floor(dollars / self.price_per_label + 1e-9)) if self.price_per_label > 0 else 0


@dataclass(frozen=True)
class StudyData:
    """Pool and test split, with labels encoded as ints (-1 = none). Pool arrays have shape (n,), test (m,)."""

    labels: tuple[str, ...]
    ids: tuple[str, ...]
    texts: tuple[str, ...]
    human: np.ndarray  # the oracle: the human label (labeler.humans' rule), -1 where nobody labeled it
    llm: np.ndarray  # the LLM's final label, -1 where it failed (all -1 when there is no LLM run)
    confidence: np.ndarray  # the LLM label's routing confidence (calibrated > ensemble > member), NaN if none
    corrected: np.ndarray  # the LLM label with the review workflow's corrections, -1 where neither
    test_ids: tuple[str, ...]
    test_texts: tuple[str, ...]
    test_human: np.ndarray
    test_llm: np.ndarray  # the LLM's own labels of the test items: scored as a reference, never trained on
    prices: Prices
    confidence_source: str = "none"
    seed: int = 0
    test_fraction: float = 0.3

    @property
    def has_llm(self) -> bool:
        return bool((self.llm >= 0).any())

    @property
    def queryable(self) -> np.ndarray:
        """(n,) bool: pool items a simulated human can label (they have an oracle label)."""
        return np.asarray(self.human >= 0)


def uniform(seed: int, item_id: str, *, salt: str = "test") -> float:
    """A uniform number in [0, 1) that depends only on (seed, salt, id)."""
    h = hashlib.blake2b(f"{seed}\x00{salt}\x00{item_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0**64


def split_mask(ids: Sequence[str], has_human: Sequence[bool] | np.ndarray, *, fraction: float, seed: int) -> np.ndarray:
    """(n,) bool: the test split (see the module docstring). Only items with a human label can be test items."""
    if not 0.0 < fraction < 1.0:
        raise StudyError(f"--test-fraction must be between 0 and 1 (got {fraction})")
    return np.array([bool(h) and uniform(seed, i) < fraction for i, h in zip(ids, has_human, strict=True)], dtype=bool)


def stopping_set(ids: Sequence[str], *, size: int, seed: int) -> np.ndarray:
    """Indices of the unlabeled stopping set: the `size` pool items with the smallest u(seed, "stop", id)."""
    order = np.argsort([uniform(seed, i, salt="stop") for i in ids], kind="stable")
    return np.sort(order[: min(size, len(ids))])


def encode(values: Iterable[str | None], labels: Sequence[str]) -> np.ndarray:
    index = {lab: k for k, lab in enumerate(labels)}
    return np.array([index.get(v, NO_LABEL) if v is not None else NO_LABEL for v in values], dtype=np.int64)


def from_arrays(
    ids: Sequence[str],
    texts: Sequence[str],
    human: Sequence[str | None],
    *,
    labels: Sequence[str],
    llm: Sequence[str | None] | None = None,
    confidence: Sequence[float | None] | None = None,
    corrected: Sequence[str | None] | None = None,
    prices: Prices,
    test_fraction: float = 0.3,
    seed: int = 0,
    confidence_source: str = "none",
) -> StudyData:
    """StudyData from plain sequences (one entry per item); the test split is drawn here, first."""
    if len(set(ids)) != len(ids):
        raise StudyError("item ids must be unique")
    n = len(ids)
    h = encode(human, labels)
    test = split_mask(ids, h >= 0, fraction=test_fraction, seed=seed)
    pool = ~test
    if test.sum() < 2 * len(labels) or (h[pool] >= 0).sum() < 2 * len(labels):
        raise StudyError(
            f"only {int((h >= 0).sum())} items have a human label: the study needs at least "
            f"{4 * len(labels)} (gold column, `--human FILE` or reviews)"
        )
    llm_codes = encode(llm, labels) if llm is not None else np.full(n, NO_LABEL)
    conf = np.array([np.nan if c is None else float(c) for c in confidence or [None] * n], dtype=float)
    corr = encode(corrected, labels) if corrected is not None else llm_codes
    return StudyData(
        labels=tuple(labels),
        ids=tuple(i for i, t in zip(ids, test, strict=True) if not t),
        texts=tuple(x for x, t in zip(texts, test, strict=True) if not t),
        human=h[pool],
        llm=llm_codes[pool],
        confidence=conf[pool],
        corrected=corr[pool],
        test_ids=tuple(i for i, t in zip(ids, test, strict=True) if t),
        test_texts=tuple(x for x, t in zip(texts, test, strict=True) if t),
        test_human=h[test],
        test_llm=llm_codes[test],
        prices=prices,
        confidence_source=confidence_source,
        seed=seed,
        test_fraction=test_fraction,
    )


def _votes(v: HumanLabel) -> int:
    """Human labels paid for on one item: every reviewer's vote, and an adjudication."""
    return len(v.votes) + (1 if v.adjudication else 0)


def from_run(
    run_dir: Path,
    *,
    human_file: Path | None = None,
    test_fraction: float = 0.3,
    seed: int = 0,
    list_price: ListPrice = ListPrice(),
    price_per_label: float | None = None,
) -> StudyData:
    """The study's data from a labeled run: every answered item, its LLM label and confidence, its human
    label (gold column, reviews and `human_file`, by labeler.humans' one rule) and the review corrections."""
    from labeler.evaluate.gather import read_human_file
    from labeler.humans import read_humans
    from labeler.record import records
    from labeler.store import RunStore

    store = RunStore.open(run_dir)
    try:
        task = store.task()
        labels = task.label_names
        extra = read_human_file(human_file) if human_file is not None else []
        oracle = read_humans(store, labels, extra=extra).verdicts
        reviews = read_humans(store, labels, use_gold=False).verdicts  # the review workflow alone
        recs = list(records(store))
    finally:
        store.close()
    ids = [r.id for r in recs]
    human = [oracle[i].label if i in oracle else None for i in ids]
    has_human = list(encode(human, labels) >= 0)
    test = split_mask(ids, has_human, fraction=test_fraction, seed=seed)
    pool_recs = [r for r, t in zip(recs, test, strict=True) if not t]
    reviewed = {i: v for i, v in reviews.items() if v.source in REVIEW_SOURCES and v.label is not None}
    corrected = [reviewed[r.id].label if r.id in reviewed else r.label for r in recs]
    in_tok = sum(r.input_tokens for r in pool_recs)
    out_tok = sum(r.output_tokens for r in pool_recs)
    recorded = sum(r.cost for r in pool_recs)
    ppl = task.review.price_per_label if price_per_label is None else price_per_label
    if recorded > 0:
        llm_cost, source, lp = recorded, "the run's recorded cost", None
    else:
        llm_cost, lp = list_price.cost(in_tok, out_tok), list_price
        source = (
            f"the run cost nothing (local model): its {in_tok:,} input + {out_tok:,} output tokens at "
            f"{list_price.name}'s list price, ${list_price.input_per_1m:g} / ${list_price.output_per_1m:g} per 1M"
        )
    prices = Prices(
        price_per_label=ppl,
        llm_cost=llm_cost,
        llm_source=source,
        input_tokens=in_tok,
        output_tokens=out_tok,
        review_labels=sum(_votes(reviewed[r.id]) for r in pool_recs if r.id in reviewed),
        list_price=lp,
    )
    sources = {r.confidence_source for r in recs if r.confidence_source}
    return from_arrays(
        ids,
        [r.text for r in recs],
        human,
        labels=labels,
        llm=[r.label for r in recs],
        confidence=[r.confidence for r in recs],
        corrected=corrected,
        prices=prices,
        test_fraction=test_fraction,
        seed=seed,
        confidence_source=", ".join(sorted(sources)) or "none",
    )
