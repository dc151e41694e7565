"""Majority vote: the posterior of an item is its vote shares (a tie keeps the split; argmax then takes the
first class in label order)."""

from __future__ import annotations

from labeler.aggregate.table import Annotations, Consensus, finish


def vote(ann: Annotations) -> Consensus:
    return finish("vote", ann, ann.one_hot().sum(axis=1))
