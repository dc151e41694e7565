"""Majority vote: the posterior of an item is its vote shares. A tie goes to the label of the first annotator
(in column order) among the tied labels; labeler.aggregate.collect puts reviewers before LLM members, so
a tie goes to a human, as in labeler.humans."""

from __future__ import annotations

import numpy as np

from labeler.aggregate.table import Annotations, Consensus, finish

TIE_BREAK = 1e-9  # far below one vote: only decides between equal counts


def vote(ann: Annotations) -> Consensus:
    onehot = ann.one_hot()
    m = onehot.shape[1]
    order = (m - np.arange(m)) / max(m, 1)  # the first annotator weighs a hair more
    return finish("vote", ann, onehot.sum(axis=1) + TIE_BREAK * np.einsum("ijk,j->ik", onehot, order))
