"""Terminal review: go through the queue in rank order, one keypress per item, saved as you go.

Keys: 1..k choose that label, s skip, b back (to change the previous answer), q quit. After a label that
differs from the shown LLM suggestion, it asks why (the task's [review] reasons; Enter for none).
Each answer is written to the run's `reviews` table at once (source "tui"), so quitting loses nothing;
starting again resumes with the items this reviewer has not answered.

Everything shown that came from the data (text, item ids, labels, reasons) goes through labeler.safe_text:
control characters appear as symbols (an item cannot clear the screen, recolour, retitle the window or
rewrite a line with CR), and every line of an item's text is printed after the gutter "  │ ", so no line of
it can pass for one of ours (a fake "LLM: ..." line, say).

With blind_audit, as in the exports (labeler.review.queue_export): no item shows the LLM's suggestion or
the routing reasons, and the items come in a shuffled order rather than by rank.

The loop (`review_loop`) reads keys through an injected function and writes through another, so tests
drive it with a script of keys.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from labeler.errors import ReviewError
from labeler.review.queue_export import presentation_order, shows_suggestion
from labeler.safe_text import quoted, visible_line
from labeler.store import RunStore
from labeler.store.rows import QueueEntry, Review

Read = Callable[[str], str]
Write = Callable[[str], None]
Save = Callable[[Review], object]


@dataclass(frozen=True)
class LoopResult:
    answered: int  # distinct items answered in this session
    skipped: int  # items passed over with s
    quit: bool  # stopped with q (or end of input) before the end of the queue


def _show(
    e: QueueEntry, i: int, n: int, *, labels: Sequence[str], suggest: bool, current: str | None, blind: bool = False
) -> str:
    width = min(100, shutil.get_terminal_size((100, 24)).columns)
    head = f"\n[{i + 1}/{n}] item {visible_line(e.item_id)}"
    if not blind:
        head += f"   routed for: {visible_line(', '.join(e.reasons)) or '-'}"
    lines = [head, "-" * width, quoted(e.text, width=width), "-" * width]
    if suggest:
        conf = "" if e.confidence is None else f" (confidence {e.confidence:.2f})"
        lines.append(f"LLM: {visible_line(str(e.llm_label))}{conf}")
    else:
        lines.append("LLM: (suggestion hidden)")
    if current is not None:
        lines.append(f"your answer: {visible_line(current)}")
    lines.append("   ".join(f"{k} {visible_line(lab)}" for k, lab in enumerate(labels, start=1)))
    return "\n".join(lines)


def _ask_reason(reasons: Sequence[str], read: Read, write: Write) -> str | None:
    menu = "   ".join(f"{k} {visible_line(r)}" for k, r in enumerate(reasons, start=1))
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
        current = answers.get(e.item_id)
        write(_show(e, i, len(entries), labels=labels, suggest=suggest, current=current, blind=blind_audit))
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
        if task.kind.elementwise:  # the keys 1..k pick one label; a label set or spans need another page
            raise ReviewError(
                f"labeler review tui asks one label per item, and {run_dir.name} is task.type = "
                f"{task.kind.type!r}; review it in the browser: `labeler review serve {run_dir}`"
            )
        entries = store.queue()
        if not redo:
            done = store.reviewers_done(reviewer)
            entries = [e for e in entries if e.item_id not in done]
        entries = presentation_order(entries, blind_audit=blind_audit, salt=str(store.manifest["run_id"]))
        if not entries:
            write("nothing to review: the queue is empty or you answered every item (`labeler route` fills it)")
            return LoopResult(0, 0, False)
        result = review_loop(
            entries,
            labels=task.label_names,
            reasons=task.review.reasons,
            reviewer=reviewer,
            save=lambda r: store.put_reviews([r]),
            read=read,
            write=write,
            blind_audit=blind_audit,
            no_suggestion=(not task.review.show_suggestion) if no_suggestion is None else no_suggestion,
        )
    finally:
        store.close()
    write(f"\n{result.answered} answered, {result.skipped} skipped; saved in {run_dir / 'run.sqlite'}")
    return result
