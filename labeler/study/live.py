"""Live active learning: the next review batch of a real run, picked by a strategy from the current student.

The student is trained on every human label of the run so far (gold column, reviews, `--human` file: the
labeler.humans rule), on the same features as the study. Candidates are the run's items that

    - have no human label yet and are not already in the review queue (so not in the random audit either:
      audit items are queued by `labeler route`, and they keep their inclusion probabilities untouched);
      the router passes the queue it is about to write (`queued`), else the run's current queue is read;
    - are not skipped (empty text: never routed);
    - are not in the study's test split: items with u(seed, id) < test_fraction never get picked, whether
      or not they have a human label yet, so the test split stays a random sample. The seed and fraction
      are read from RUN_DIR/study/split.json when a study was run, else the study's defaults.

Audit items that humans answered are used for training: that changes nothing in the audit's estimates of
the LLM's accuracy, which only depend on how the audit items were drawn.

Before two labels are known there is no student; the batch is then a cold start: k-center greedy for
"coreset"/"margin_coreset", random for the rest, and the reasons say so. Putting the picks into the review
queue is the router's job (`labeler route RUN_DIR --strategy margin --batch 20`, or `labeler study next
RUN_DIR --queue` to append them to the current queue: labeler.review.router); this returns the ids and
reasons, and writes them to a CSV.
"""

from __future__ import annotations

import csv
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labeler.study.classifiers import featurize, fit_proba, make_factory
from labeler.study.data import StudyError, encode, uniform
from labeler.study.run import read_split
from labeler.study.strategies import NEEDS_STUDENT, STRATEGIES, Query, pick


@dataclass(frozen=True)
class Pick:
    id: str
    rank: int
    strategy: str
    score: float
    reason: str


@dataclass(frozen=True)
class NextBatch:
    picks: tuple[Pick, ...]
    trained_on: int  # human labels the student was trained on
    candidates: int
    excluded_test: int
    excluded_queued: int
    cold_start: bool


def next_batch(
    run_dir: Path,
    *,
    strategy: str = "margin",
    batch: int = 20,
    human_file: Path | None = None,
    classifier: str = "logreg",
    seed: int | None = None,
    test_fraction: float | None = None,
    committee: int = 5,
    hybrid_factor: int = 5,
    queued: Collection[str] | None = None,
) -> NextBatch:
    """The next `batch` items of the run to send to review, chosen by `strategy` (see the module docstring).
    `queued`: the item ids of the review queue to leave out (None: the run's current queue)."""
    from labeler.evaluate.gather import read_human_file
    from labeler.humans import read_humans
    from labeler.record import records
    from labeler.store import RunStore

    if strategy not in STRATEGIES:
        raise StudyError(f"unknown strategy {strategy!r}: choose from {', '.join(STRATEGIES)}")
    if batch < 1:
        raise StudyError("--batch must be at least 1")
    split = read_split(Path(run_dir) / "study" / "split.json")
    s_seed, s_frac = split if split else (0, 0.3)
    s_seed = s_seed if seed is None else seed
    s_frac = s_frac if test_fraction is None else test_fraction
    store = RunStore.open(run_dir)
    try:
        labels = store.task().label_names
        extra = read_human_file(human_file) if human_file is not None else []
        verdicts = read_humans(store, labels, extra=extra).verdicts
        queued = {e.item_id for e in store.queue()} if queued is None else set(queued)
        recs = list(records(store))
    finally:
        store.close()
    ids = [r.id for r in recs]
    test = np.array([uniform(s_seed, i) < s_frac for i in ids], dtype=bool)
    human = encode([verdicts[i].label if i in verdicts else None for i in ids], labels)
    keep = np.flatnonzero(~test)
    feats = featurize([recs[i].text for i in keep], [], seed=s_seed)
    y = human[keep]
    in_queue = np.array([ids[i] in queued for i in keep], dtype=bool)
    skipped = np.array([recs[i].status == "skipped" for i in keep], dtype=bool)
    candidates = np.flatnonzero((y < 0) & ~in_queue & ~skipped)
    lab = np.flatnonzero(y >= 0)
    k = len(labels)
    factory = make_factory(classifier)
    cold = len(np.unique(y[lab])) < 2
    proba = None
    used = strategy
    if cold:
        used = "coreset" if strategy in ("coreset", "margin_coreset") else "random"
    elif strategy in NEEDS_STUDENT:
        proba = fit_proba(factory, feats.pool[lab], y[lab], k).proba(feats.pool)
    q = Query(
        X=feats.pool,
        Z=feats.pool_dense,
        y=np.where(y >= 0, y, -1),
        candidates=candidates,
        proba=proba,
        factory=factory,
        k=k,
        rng=np.random.default_rng([s_seed, len(lab)]),
        committee=committee,
        hybrid_factor=hybrid_factor,
        labels=tuple(labels),
    )
    got = pick(used, q, batch)
    prefix = f"cold start ({len(lab)} human labels, fewer than two labels seen): " if cold else ""
    picks = tuple(
        Pick(ids[keep[i]], rank, used, float(s), prefix + reason)
        for rank, (i, s, reason) in enumerate(zip(got.indices, got.scores, got.reasons, strict=True), 1)
    )
    return NextBatch(
        picks=picks,
        trained_on=len(lab),
        candidates=len(candidates),
        excluded_test=int(test.sum()),
        excluded_queued=int(in_queue.sum()),
        cold_start=cold,
    )


def write_picks(path: Path, picks: tuple[Pick, ...]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "rank", "strategy", "score", "reason"])
        w.writerows([p.id, p.rank, p.strategy, "" if np.isnan(p.score) else f"{p.score:.6g}", p.reason] for p in picks)
