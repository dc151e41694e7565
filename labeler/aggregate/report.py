"""The annotators section's numbers for `labeler eval` (rendered by labeler.evaluate.annotators): every LLM
member and reviewer of a run by the consensus of all of them (the task's `[aggregate] method`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def annotator_metrics(run_dir: Path, *, method: str | None = None) -> dict[str, Any] | None:
    from labeler.aggregate import aggregate_config, check_method
    from labeler.aggregate.collect import consensus_of, read_annotations
    from labeler.aggregate.quality import consensus_gold_accuracy
    from labeler.aggregate.status import qualities
    from labeler.aggregate.table import Consensus
    from labeler.errors import AggregateError
    from labeler.store import RunStore

    store = RunStore.open(run_dir)
    try:
        cfg = aggregate_config(store.task().raw)
        try:
            ra = read_annotations(store)
        except AggregateError:  # spans: no aggregation
            return None
    finally:
        store.close()
    names = {a for _, a, _ in ra.triples}
    if len(names) < 2:
        return None
    method = check_method(method or cfg.method)
    notes = []
    try:
        qs = qualities(ra, method)
        c = consensus_of(ra, method)
    except AggregateError as exc:  # crowdlab without overlap: say so and use Dawid–Skene
        notes.append(f"{method}: {exc}; shown by dawid_skene instead")
        method = "dawid_skene"
        qs = qualities(ra, method)
        c = consensus_of(ra, method)
    gold_acc, gold_n = consensus_gold_accuracy(c, ra.gold) if isinstance(c, Consensus) else (None, 0)
    return {
        "method": method,
        "kind": ra.kind,
        "classes": list(ra.labels),
        "consensus_gold": {"accuracy": gold_acc, "n": gold_n},
        "notes": notes,
        "annotators": [
            {
                "name": q.name,
                "kind": "reviewer" if q.name in ra.humans else "LLM",
                "n": q.n,
                "accuracy": {"value": q.accuracy, "low": q.low, "high": q.high},
                "confusion": [[float(x) for x in row] for row in q.confusion] if ra.kind == "single" else None,
                "overprediction": dict(q.overprediction),
                "others_accuracy": q.others_accuracy,
                "worse_than_others": q.worse_than_others,
                "gold": {"accuracy": q.gold_accuracy, "n": q.gold_n},
            }
            for q in qs
        ],
    }
