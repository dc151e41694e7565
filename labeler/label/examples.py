"""Few-shot example selection from a pool: the task's examples, then the `[fewshot] pool` files (where
`labeler review promote` puts human corrections).

    fixed      the first k of the pool (k = 0: all of it), the same for every item
    balanced   k examples, label by label in turn (a seeded order within each label), the same for every item
    knn        the k pool examples most similar to the item (TF-IDF cosine), the most similar last
    mmr        maximal marginal relevance: each next example maximises
               λ·sim(item, e) − (1 − λ)·max sim(e, chosen), so the k are similar to the item but not to each other

An example whose text is the item's own text is never shown for it (a promoted correction must not
answer its own item). knn and mmr give every item its own prompt prefix, so a server's shared-prefix
cache cannot help: on the embedded model they cost prompt processing per item (measured in the README).
Similarity is TF-IDF (scikit-learn, word uni+bigrams, sublinear tf) fitted on the pool once per builder.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from labeler.quality_config import DEFAULT_K, FewShotConfig
from labeler.types import Example

if TYPE_CHECKING:
    from labeler.config import TaskConfig


def balanced(pool: Sequence[Example], labels: Sequence[str], k: int, *, seed: int = 0) -> tuple[Example, ...]:
    """k examples taken label by label in turn (labels in `labels` order), each label's examples in a seeded
    shuffle of their pool order; a label that runs out is skipped."""
    rng = random.Random(seed)
    queues = {lab: [e for e in pool if e.label == lab] for lab in labels}
    for q in queues.values():
        rng.shuffle(q)
    out: list[Example] = []
    while len(out) < k and any(queues.values()):
        for lab in labels:
            if queues[lab] and len(out) < k:
                out.append(queues[lab].pop(0))
    return tuple(out)


def mmr_order(sim_item: Any, sim_pool: Any, k: int, lam: float) -> list[int]:
    """Indices of k pool entries by maximal marginal relevance. `sim_item` (m,) similarity of each pool entry
    to the item, `sim_pool` (m, m) between pool entries; entries with sim_item = -inf are never taken."""
    import numpy as np

    chosen: list[int] = []
    free = np.isfinite(sim_item)
    for _ in range(min(k, int(free.sum()))):
        redundancy = sim_pool[:, chosen].max(axis=1) if chosen else np.zeros(len(sim_item))
        score = np.where(free, lam * sim_item - (1 - lam) * redundancy, -np.inf)
        best = int(np.argmax(score))
        chosen.append(best)
        free[best] = False
    return chosen


@dataclass(frozen=True)
class Selector:
    """Picks the examples of one prompt. Built once per request builder."""

    pool: tuple[Example, ...]
    labels: tuple[str, ...]
    config: FewShotConfig = field(default_factory=FewShotConfig)

    @property
    def per_item(self) -> bool:
        return self.config.per_item and bool(self.pool)

    @property
    def k(self) -> int:
        return self.config.k or (len(self.pool) if self.config.strategy == "fixed" else DEFAULT_K)

    def fixed(self) -> tuple[Example, ...]:
        """The examples of every prompt for fixed and balanced; for knn/mmr, those of a text with no
        similarity to any example (a content-free input): the balanced choice."""
        if self.config.strategy == "fixed":
            return self.pool[: self.k]
        return balanced(self.pool, self.labels, self.k, seed=self.config.seed)

    @functools.cached_property
    def _index(self) -> tuple[Any, Any, Any]:
        """(vectorizer, pool matrix (m, V) L2-normalised, pool-pool similarity (m, m))."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
        matrix = vec.fit_transform([e.text for e in self.pool])
        return vec, matrix, (matrix @ matrix.T).toarray()

    def similarities(self, text: str) -> Any:
        """(m,) cosine similarity of `text` to each pool example; -inf for the item's own text."""
        import numpy as np

        vec, matrix, _ = self._index
        sim = np.asarray((matrix @ vec.transform([text]).T).toarray()).ravel()
        own = np.asarray([e.text.strip() == text.strip() for e in self.pool])
        return np.where(own, -np.inf, sim)

    def select(self, text: str) -> tuple[Example, ...]:
        """This item's examples, in prompt order (most relevant last, nearest the item)."""
        if not self.per_item:
            return tuple(e for e in self.fixed() if e.text.strip() != text.strip())
        import numpy as np

        sim = self.similarities(text)
        if not np.any(sim[np.isfinite(sim)] > 0):  # nothing in common with any example: the balanced choice
            return tuple(e for e in self.fixed() if e.text.strip() != text.strip())
        if self.config.strategy == "knn":
            order = [int(i) for i in np.argsort(-sim, kind="stable")[: self.k] if np.isfinite(sim[i])]
        else:
            order = mmr_order(sim, self._index[2], self.k, self.config.mmr_lambda)
        return tuple(self.pool[i] for i in reversed(order))


def task_pool(task: TaskConfig) -> tuple[Example, ...]:
    """The task's examples, then the pool files' (a text given twice is kept once)."""
    seen: set[str] = set()
    out = []
    for e in (*task.examples, *task.quality.fewshot.pool):
        if e.text not in seen:
            seen.add(e.text)
            out.append(e)
    return tuple(out)


def build_selector(task: TaskConfig) -> Selector:
    return Selector(task_pool(task), task.label_names, task.quality.fewshot)
