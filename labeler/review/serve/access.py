"""The review page's side of the run: what a reviewer gets next, what the page may show of it, and the answers.

The rules, the same as the other review tools:
    - order: the queue by rank with gold items at hashed places, or with `blind_audit` one hashed shuffle
      of all (rank order would put the confident audit items last);
    - the LLM's label and confidence are shown on queued items that are not in the random audit, unless
      `blind_audit` or `no_suggestion` (or the task's review.show_suggestion = false) hides them
      everywhere; an audit item never shows them (the audit measures the LLM) and a gold item looks like
      an audit item (no suggestion; routed for "audit"), so nothing marks the test out;
    - with `blind_audit` no item shows its routing reasons and the progress has no per-reason counts
      (they would move when an audit item is answered);
    - `overlap`: an item is served until that many reviewers have answered it; a reviewer gets each item
      once (answered, skipped, or answered before through another tool);
    - an answer is checked by the importer's rule (labeler.review.answers.check_answers: a known item, a
      label of the task) and stored in one transaction, once per nonce; answers on gold items measure the
      reviewer (status page) and are not reviews.

Task types: single (a number key answers) and multi_label (number keys toggle labels, Enter submits the
set; the LLM's labels come pre-ticked where its suggestion may be shown). A multi-label answer is read by
the task type's own parser (known names, none twice, min/max labels) and stored as `kind.encode(value)`,
the JSON list every other stage reads. spans: select text with the mouse, a number key marks the
selection as that type, Backspace takes the last span off, Enter submits them (the LLM's spans come
pre-marked where its suggestion may be shown); read by the span type's parser (offsets inside the text,
known types, overlaps only where the task allows them) and stored as its JSON list.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from labeler.errors import ReviewError
from labeler.review.answers import check_answers
from labeler.review.common import Answer
from labeler.review.live_common import ReviewerQuality, gold_count, reviewer_quality
from labeler.store import RunStore
from labeler.store.rows import Review
from labeler.store.serve_tables import Applied, Progress, ServeItem, ServeTables
from labeler.tasktypes.registry import for_task

SOURCE = "serve"
KINDS = ("single", "multi_label", "spans")
NOTE_MAX = 2000
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


@dataclass(frozen=True)
class Settings:
    overlap: int = 1
    blind_audit: bool = False
    no_suggestion: bool | None = None  # None: the task's review.show_suggestion decides
    gold_share: float = 0.0


@dataclass(frozen=True)
class ItemView:
    """What the page shows of one item: nothing more reaches the browser."""

    item_id: str
    text: str
    suggestion: str | None  # the LLM's label as shown (multi_label: its names joined), None: hidden
    confidence: float | None
    reasons: tuple[str, ...]
    ticked: tuple[str, ...] = ()  # multi_label: the labels pre-ticked (the suggestion's)
    spans: str = "[]"  # spans: the pre-marked spans as JSON [{"start", "end", "type"}] (code points)


@dataclass(frozen=True)
class ReviewerStatus:
    reviewer: str
    answered: int
    skipped: int
    undone: int
    quality: ReviewerQuality | None


def check_nonce(nonce: str) -> str:
    if not _NONCE.match(nonce or ""):
        raise ReviewError("the page sent no valid answer id; reload the page")
    return nonce


F = TypeVar("F", bound=Callable[..., Any])


def _locked(method: F) -> F:
    """One store call at a time: the desk's connection is one sqlite connection, and a server may call it
    from more than one thread (two test clients, a threaded worker); a method holds the desk's lock."""

    @functools.wraps(method)
    def run(self: Desk, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return run  # type: ignore[return-value]


class Desk:
    """One run opened for review. Every method reads or writes a few rows; none loads the queue."""

    def __init__(self, run_dir: Path, settings: Settings) -> None:
        if settings.overlap < 1:
            raise ReviewError(f"--overlap is the number of reviewers per item: at least 1, got {settings.overlap}")
        self.run_dir = run_dir
        self.settings = settings
        self._lock = threading.RLock()
        self.store = RunStore.open(run_dir)
        try:
            self.task = self.store.task()
            if self.task.kind.type not in KINDS:
                raise ReviewError(
                    f"labeler review serve reviews single-label and multi-label tasks; this task is "
                    f"{self.task.kind.type}: use `labeler review export {run_dir} --format labelstudio` for it"
                )
            self.kind = for_task(self.task)
            self.tables = ServeTables(self.store.conn)
            salt = str(self.store.manifest.get("run_id", run_dir.name))
            queued = self.tables.queue_size()
            if not queued:
                raise ReviewError(f"the queue of {run_dir} is empty; run `labeler route {run_dir}` first")
            want = gold_count(queued, settings.gold_share)
            self.queued, self.gold = self.tables.prepare_serve(salt=salt, blind=settings.blind_audit, gold_n=want)
            self.total, self.reason_totals = self.tables.serve_totals()
            self.gold_wanted = want
        except BaseException:
            self.store.close()
            raise
        hide = settings.no_suggestion
        self.hide_suggestion = (not self.task.review.show_suggestion) if hide is None else hide

    @_locked
    def close(self) -> None:
        self.store.close()

    @property
    def labels(self) -> Sequence[str]:
        return self.task.label_names

    @property
    def multi(self) -> bool:
        return self.task.kind.type == "multi_label"

    @property
    def spans(self) -> bool:
        return self.task.kind.type == "spans"

    # --- reading -----------------------------------------------------------------------------------
    def view(self, item: ServeItem) -> ItemView:
        blind = self.settings.blind_audit
        suggest = (
            item.queued and not item.audit and not blind and not self.hide_suggestion and item.llm_label is not None
        )
        if blind:
            reasons: tuple[str, ...] = ()
        elif item.gold is not None:
            reasons = ("audit",)  # a gold item looks like an audit item
        else:
            reasons = item.reasons
        shown, ticked, spans = (item.llm_label if suggest else None), (), "[]"
        if shown is not None and (self.multi or self.spans):
            try:
                value = tuple(self.kind.decode(shown))
            except ValueError:  # not what the task type stores: show no suggestion rather than a wrong one
                shown, suggest = None, False
            else:
                if self.multi:
                    ticked = value
                    shown = ", ".join(ticked) or "(no label)"
                else:
                    spans = json.dumps([{"start": x.start, "end": x.end, "type": x.type} for x in value])
                    shown = f"{len(value)} spans (marked)"
        return ItemView(item.item_id, item.text, shown, item.confidence if suggest else None, reasons, ticked, spans)

    @_locked
    def next_view(self, reviewer: str) -> ItemView | None:
        item = self.tables.next_served(reviewer, overlap=self.settings.overlap)
        return None if item is None else self.view(item)

    @_locked
    def progress(self, reviewer: str) -> Progress:
        return self.tables.serve_progress(
            reviewer,
            overlap=self.settings.overlap,
            total=self.total,
            reason_totals=None if self.settings.blind_audit else self.reason_totals,
        )

    # --- writing -----------------------------------------------------------------------------------
    @_locked
    def answer(
        self,
        reviewer: str,
        item_id: str,
        label: str | Sequence[str],
        *,
        nonce: str,
        note: str | None = None,
        correction_reason: str | None = None,
    ) -> Applied:
        """Check one answer by the importer's rule (multi_label: the task type's) and store it, exactly once for
        its nonce. `label`: a label name, or for multi_label the names ticked."""
        check_nonce(nonce)
        item = self.tables.serve_item(item_id)
        note = (note or "").strip()[:NOTE_MAX] or None
        if self.multi or self.spans:
            return self._answer_kind(
                reviewer, item, item_id, [label] if isinstance(label, str) else label, nonce, note
            )
        if not isinstance(label, str):
            raise ReviewError(f"page answer of {reviewer}: one label expected; reload the page")
        answer = Answer(f"page answer of {reviewer}", item_id, reviewer, label, correction_reason or None, note)
        (review,) = check_answers(
            [answer],
            item_ids=frozenset() if item is None else frozenset({item_id}),
            labels=self.labels,
            reasons=self.task.review.reasons,
            default_reviewer=reviewer,
            source=SOURCE,
        )
        assert item is not None  # check_answers refused an unknown item
        return self.tables.serve_answer(nonce, review, gold=item.gold is not None)

    def _answer_kind(
        self, reviewer: str, item: ServeItem | None, item_id: str, values: Sequence[str], nonce: str, note: str | None
    ) -> Applied:
        """A multi-label answer (`values`: the names ticked) or a span answer (`values`: one JSON list of
        {"start", "end", "type"}), read by the task type's own parser."""
        if item is None:
            raise ReviewError(f"page answer of {reviewer}: unknown item id {item_id!r}; reload the page")
        if self.multi:
            raw = json.dumps({"labels": list(values)})
        else:
            try:
                marked = json.loads(values[0]) if len(values) == 1 else None
            except json.JSONDecodeError:
                marked = None
            if not isinstance(marked, list):
                raise ReviewError(f"page answer of {reviewer}: the spans sent are not a JSON list; reload the page")
            raw = json.dumps({"spans": marked})
        parsed = self.kind.parse(raw, item.text)
        if parsed.error is not None:
            raise ReviewError(f"page answer of {reviewer}: {parsed.error}")  # the error lists the set itself
        review = Review(item_id, reviewer, str(self.kind.encode(parsed.value)), None, note, SOURCE)
        return self.tables.serve_answer(nonce, review, gold=item.gold is not None)

    @_locked
    def skip(self, reviewer: str, item_id: str, *, nonce: str) -> Applied:
        check_nonce(nonce)
        if self.tables.serve_item(item_id) is None:
            raise ReviewError(f"unknown item id {item_id!r}; reload the page")
        return self.tables.serve_skip(nonce, reviewer, item_id)

    @_locked
    def undo(self, reviewer: str, *, nonce: str) -> Applied:
        return self.tables.serve_undo(check_nonce(nonce), reviewer)

    # --- the status page -----------------------------------------------------------------------------
    @_locked
    def status(self, reviewers: Sequence[str], *, min_accuracy: float = 0.8) -> list[ReviewerStatus]:
        """Per reviewer: answers, skips and undos on the page, accuracy on gold items and agreement on
        overlapping items (labeler.review.live_common.reviewer_quality, as the live pull measures them)."""
        counts = self.tables.serve_counts()
        quality = {
            q.reviewer: q
            for q in reviewer_quality(
                self.tables.serve_answers(), gold=self.tables.serve_gold(), min_accuracy=min_accuracy
            )
        }
        out = []
        for who in sorted({*reviewers, *counts}):
            c = counts.get(who, {})
            out.append(
                ReviewerStatus(
                    who, c.get("answer", 0) + c.get("gold", 0), c.get("skip", 0), c.get("undo", 0), quality.get(who)
                )
            )
        return out

    def report_path(self) -> Path:
        """Where `labeler eval` writes the rendered report of this run (a fixed path, never from a request)."""
        return self.run_dir / "report" / "report.html"

    def build_report(self) -> Path:
        from labeler.evaluate import evaluate_run

        out, _ = evaluate_run(self.run_dir)
        return out / "report.html"
