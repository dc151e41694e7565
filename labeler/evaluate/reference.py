"""Labels as codes (an item's reference label itself comes from labeler.humans, the one rule).

Conventions used by every metric module
    labels      the task's label set, length K. Values are encoded as indices 0..K-1; anything else (None: the
                LLM failed; a label outside the set) becomes K, "no label", which is always an error.
    y_true      (n,) the human (reference) label of each item; y_pred (n,) the LLM's label.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np


def encode(values: Sequence[Hashable | None], labels: Sequence[str]) -> np.ndarray:
    """(n,) int codes: the index of each value in `labels`, or len(labels) for None and unknown values."""
    index: dict[Hashable, int] = {lab: i for i, lab in enumerate(labels)}
    return np.fromiter((index.get(v, len(labels)) for v in values), dtype=np.int64, count=len(values))
