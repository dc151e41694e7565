"""`labeler review merge`: the final dataset of a run (labeler.review.dataset) written to a file."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from labeler.export import item_rows, write_annotated
from labeler.review.dataset import with_human_labels
from labeler.store import RunStore
from labeler.tasktypes.registry import for_task


def final_rows(store: RunStore, *, with_text: bool = False) -> Iterator[dict[str, Any]]:
    """The final dataset, one row per answered item in input order (columns: labeler.review.dataset)."""
    return with_human_labels(store, item_rows(store, with_text=with_text))


def merge_run(run_dir: Path, out: Path, fmt: str | None = None, *, with_text: bool = False) -> Counter[str]:
    """Write the final dataset; returns the count of rows per source (and "tie")."""
    fmt = fmt or out.suffix.lstrip(".").lower()
    counts: Counter[str] = Counter()

    def counted(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for r in rows:
            counts[r["source"]] += 1
            counts["tie"] += bool(r["tie"])
            yield r

    store = RunStore.open(run_dir)
    try:
        write_annotated(counted(final_rows(store, with_text=with_text)), out, fmt, for_task(store.task()))
    finally:
        store.close()
    return counts
