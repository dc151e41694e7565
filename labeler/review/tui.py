"""Terminal review: go through the queue in rank order, one keypress per item, saved as you go.

Keys: 1..k choose that label, s skip, b back (to change the previous answer), q quit. After a label that
differs from the shown LLM suggestion, it asks why (the task's [review] reasons; Enter for none).
Each answer is written to the run's `reviews` table at once (source "tui"), so quitting loses nothing;
starting again resumes with the items this reviewer has not answered.

The loop (`review_loop`) reads keys through an injected function and writes through another, so tests
drive it with a script of keys.
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from labeler.review.tools import QueueEntry, Review, ensure_schema, read_queue, save_reviews, shows_suggestion
from labeler.store import RunStore

Read = Callable[[str], str]
Write = Callable[[str], None]
Save = Callable[[Review], object]


@dataclass(frozen=True)
class LoopResult:
    answered: int  # distinct items answered in this session
    skipped: int  # items passed over with s
    quit: bool  # stopped with q (or end of input) before the end of the queue


def _show(e: QueueEntry, i: int, n: int, *, labels: Sequence[str], suggest: bool, current: str | None) -> str:
    width = min(100, shutil.get_terminal_size((100, 24)).columns)
    lines = [f"\n[{i + 1}/{n}] item {e.item_id}   routed for: {', '.join(e.reasons) or '-'}", "-" * width]
    lines += [textwrap.fill(p, width) if p.strip() else "" for p in e.text.splitlines()] or [""]
    lines.append("-" * width)
    if suggest:
        conf = "" if e.confidence is None else f" (confidence {e.confidence:.2f})"
        lines.append(f"LLM: {e.llm_label}{conf}")
    else:
        lines.append("LLM: (suggestion hidden)")
    if current is not None:
        lines.append(f"your answer: {current}")
    lines.append("   ".join(f"{k} {lab}" for k, lab in enumerate(labels, start=1)))
    return "\n".join(lines)


def _ask_reason(reasons: Sequence[str], read: Read, write: Write) -> str | None:
    menu = "   ".join(f"{k} {r}" for k, r in enumerate(reasons, start=1))
    while True:
        key = read(f"why the change? {menu}   (Enter: no reason) > ").strip()
        if not key:
            return None
        if key.isdigit() and 1 <= int(key) <= len(reasons):
            return reasons[int(key) - 1]
        write(f"type 1..{len(reasons)} or press Enter")


def review_loop(
    entries: Sequence[QueueEntry],
    *,
    labels: Sequence[str],
    reasons: Sequence[str],
    reviewer: str,
    save: Save,
    read: Read = input,
    write: Write = print,
    blind_audit: bool = False,
    no_suggestion: bool = False,
) -> LoopResult:
    """Ask for a label for each entry in order; `save` gets each Review as soon as it is given."""
    answers: dict[str, str] = {}
    skipped: set[str] = set()
    i = 0
    prompt = f"[1-{len(labels)}] label, s skip, b back, q quit > "
    while i < len(entries):
        e = entries[i]
        suggest = shows_suggestion(e, blind_audit=blind_audit, no_suggestion=no_suggestion)
        write(_show(e, i, len(entries), labels=labels, suggest=suggest, current=answers.get(e.item_id)))
        try:
            key = read(prompt).strip().lower()
        except EOFError:
            return LoopResult(len(answers), len(skipped - set(answers)), True)
        if key == "q":
            return LoopResult(len(answers), len(skipped - set(answers)), True)
        if key == "s":
            skipped.add(e.item_id)
            i += 1
        elif key == "b":
            if i == 0:
                write("this is the first item")
            i = max(0, i - 1)
        elif key.isdigit() and 1 <= int(key) <= len(labels):
            label = labels[int(key) - 1]
            reason = None
            if suggest and label != e.llm_label and reasons:
                try:
                    reason = _ask_reason(reasons, read, write)
                except EOFError:
                    reason = None
            save(Review(e.item_id, reviewer, label, correction_reason=reason, source="tui"))
            answers[e.item_id] = label
            i += 1
        else:
            write(f"unknown key {key!r}: {prompt}")
    return LoopResult(len(answers), len(skipped - set(answers)), False)


def run_tui(
    run_dir: Path,
    *,
    reviewer: str,
    read: Read = input,
    write: Write = print,
    blind_audit: bool = False,
    no_suggestion: bool | None = None,
    redo: bool = False,
) -> LoopResult:
    """Review a run's queue in the terminal. Items this reviewer already answered are left out unless `redo`."""
    store = RunStore.open(run_dir)
    try:
        task = store.task()
        ensure_schema(store.conn)
        entries = read_queue(store)
        if not redo:
            done = {r[0] for r in store.conn.execute("SELECT item_id FROM reviews WHERE reviewer = ?", (reviewer,))}
            entries = [e for e in entries if e.item_id not in done]
        if not entries:
            write("nothing to review: the queue is empty or you answered every item (`labeler route` fills it)")
            return LoopResult(0, 0, False)
        result = review_loop(
            entries,
            labels=task.label_names,
            reasons=task.review.reasons,
            reviewer=reviewer,
            save=lambda r: save_reviews(store.conn, [r]),
            read=read,
            write=write,
            blind_audit=blind_audit,
            no_suggestion=(not task.review.show_suggestion) if no_suggestion is None else no_suggestion,
        )
    finally:
        store.close()
    write(f"\n{result.answered} answered, {result.skipped} skipped; saved in {run_dir / 'run.sqlite'}")
    return result
