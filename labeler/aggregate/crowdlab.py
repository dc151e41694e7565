"""CROWDLAB (cleanlab's `multiannotator.get_label_quality_multiannotator`): the model's per-item class
probabilities and the human annotators' answers, each weighted by its estimated quality.

CROWDLAB treats the model as one classifier beside the annotators, so the LLM members are not passed to it
as annotators (that would count the model twice): the model is the LLM's calibrated distribution
(`probs`), the annotators are `humans`. Items no human answered keep the model's distribution. The
posterior is CROWDLAB's weighted average of the model's distribution and the annotators' answers
(cleanlab's `post_pred_probs`, rebuilt from the weights it returns).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from labeler.aggregate.table import Annotations, Consensus, finish
from labeler.errors import AggregateError


def crowdlab(ann: Annotations, probs: np.ndarray, *, humans: Sequence[str], seed: int = 0) -> Consensus:
    """`probs`: (n, K) the model's distribution per item (rows sum to 1); `humans`: the annotators cleanlab
    weighs (the others, LLM members, get confusion matrices only)."""
    from cleanlab.multiannotator import get_label_quality_multiannotator

    probs = np.clip(np.asarray(probs, dtype=float), 1e-6, None)
    probs = probs / probs.sum(axis=1, keepdims=True)
    cols = [ann.annotators.index(h) for h in humans if h in ann.annotators]
    human = ann.labels[:, cols].astype(float)
    human[human < 0] = np.nan
    has = ~np.isnan(human).all(axis=1)
    if len(cols) < 2 or int((np.sum(~np.isnan(human), axis=1) >= 2).sum()) == 0:
        raise AggregateError(
            "crowdlab needs items answered by two or more human reviewers; review with --overlap 2, "
            "or aggregate with dawid_skene"
        )
    keep = ~np.isnan(human[has]).all(axis=0)  # cleanlab refuses an annotator without an answer
    labels = human[has][:, keep]
    state = np.random.get_state()  # cleanlab breaks a last tie of its majority vote with np.random.choice:
    np.random.seed(seed)  # seeded here, so the consensus is reproducible, and the caller's state is restored
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="breaking ties of examples", category=UserWarning)
            result = get_label_quality_multiannotator(
                labels, probs[has], verbose=False, return_detailed_quality=False, return_annotator_stats=False,
                return_weights=True,
            )
    finally:
        np.random.set_state(state)
    post = probs.copy()
    post[has] = _posterior(labels, probs[has], result)
    return finish("crowdlab", ann, post)


def _posterior(labels: np.ndarray, probs: np.ndarray, result: dict) -> np.ndarray:
    """cleanlab's CROWDLAB posterior (its `post_pred_probs`, which it does not return) rebuilt from what it
    returns: the model weight, the annotator weights and the agreement with the consensus. Its consensus
    quality score is this posterior at the consensus label (tests/test_aggregate.py checks it)."""
    k = probs.shape[1]
    quality = result["label_quality"]
    n_ann = np.sum(~np.isnan(labels), axis=1)
    agreement = quality["annotator_agreement"].to_numpy(dtype=float)
    likely = float(np.mean(agreement[n_ann != 1]))
    unlikely = (1.0 - likely) / (k - 1)
    mw, aw = float(result["model_weight"]), np.asarray(result["annotator_weight"], dtype=float)
    answered = ~np.isnan(labels)
    total = mw + answered.astype(float) @ aw
    post = probs * mw
    for i in range(k):
        post[:, i] += np.where(answered, np.where(labels == i, likely, unlikely), 0.0) @ aw
    return post / total[:, None]
