"""Several annotators, one truth: aggregate every annotation of an item (each LLM member's answer, each
human reviewer's) into a consensus label with its posterior, and estimate each annotator's confusion matrix.

    [aggregate]
    method = "vote"          # "vote" | "dawid_skene" | "glad" | "mace" | "crowdlab"
    min_accuracy = 0.8       # `labeler review status` flags reviewers estimated below this
    uncertain_below = 0.9    # `labeler route --more-reviews N` takes items whose consensus posterior is below

    table             Annotations (items x annotators), Consensus (posterior, confusions)   pure numpy
    vote              majority vote                                                          pure numpy
    dawid_skene       Dawid–Skene EM                                                         pure numpy
    crowdkit_methods  GLAD, MACE (crowd-kit)                                                 imported when used
    crowdlab          CROWDLAB (cleanlab.multiannotator), with the LLM's distribution       imported when used
    multilabel        multi-label tasks: each label aggregated as a yes/no question
    collect           a run's annotations, read from the store
    quality           per-annotator accuracy with an interval, leave-one-out comparison, flags
    requeue           `labeler route --more-reviews N`

Nothing here is imported by building the command line: crowd-kit and cleanlab load only when a method
that needs them runs (they are the optional extra `aggregate`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labeler.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from labeler.aggregate.table import Annotations, Consensus

METHODS = ("vote", "dawid_skene", "glad", "mace", "crowdlab")
_KEYS = {"method", "min_accuracy", "uncertain_below"}


@dataclass(frozen=True)
class AggregateConfig:
    method: str = "vote"
    min_accuracy: float = 0.8
    uncertain_below: float = 0.9


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ConfigError(f"aggregate.method: unknown method {method!r}; use one of {', '.join(METHODS)}")
    return method


def aggregate_config(raw: Mapping[str, Any]) -> AggregateConfig:
    """The [aggregate] table of a task config (the parsed TOML), checked."""
    table = raw.get("aggregate", {})
    if not isinstance(table, Mapping):
        raise ConfigError("[aggregate] must be a table, e.g. [aggregate] method = \"dawid_skene\"")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise ConfigError(f"aggregate.{unknown[0]}: unknown key; use {', '.join(sorted(_KEYS))}")
    method = table.get("method", "vote")
    if not isinstance(method, str):
        raise ConfigError(f"aggregate.method must be a string, one of {', '.join(METHODS)}")
    out: dict[str, Any] = {"method": check_method(method)}
    for key in ("min_accuracy", "uncertain_below"):
        if key in table:
            v = table[key]
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 <= v <= 1.0:
                raise ConfigError(f"aggregate.{key} must be a number between 0 and 1, got {v!r}")
            out[key] = float(v)
    return AggregateConfig(**out)


def aggregate(
    ann: Annotations,
    method: str,
    *,
    probs: np.ndarray | None = None,
    humans: Sequence[str] = (),
    seed: int = 0,
) -> Consensus:
    """The consensus of `ann` by `method`. crowdlab needs `probs` ((n, K), the LLM's distribution per item)
    and `humans` (the annotators it weighs; see labeler.aggregate.crowdlab)."""
    check_method(method)
    if method == "vote":
        from labeler.aggregate.vote import vote

        return vote(ann)
    if method == "crowdlab":
        from labeler.aggregate.crowdlab import crowdlab
        from labeler.errors import AggregateError

        if probs is None:
            raise AggregateError("crowdlab needs the LLM's distribution per item; this run stores none")
        return crowdlab(ann, probs, humans=humans, seed=seed)
    if method == "dawid_skene":
        from labeler.aggregate.dawid_skene import dawid_skene

        return dawid_skene(ann)
    from labeler.aggregate.crowdkit_methods import crowdkit

    return crowdkit(ann, method, seed=seed)
