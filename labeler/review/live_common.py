"""What the live sync with Label Studio and Argilla shares: credentials, the pushed set (queue + gold items),
the pull bookkeeping and the reviewer quality gates. Pure functions; no sockets, no SQL.

Pull, the rule (both tools):
    1. the tool's answers (`Pulled`: one per annotation / response, submitted only) on the items this
       project was given; answers on gold items go to the quality gate only, never into the reviews
    2. one answer per (item, reviewer): a ground-truth / adjudicating answer first, else the latest
       (updated time, then the tool's id); the others are counted as duplicates
    3. `plan_pull` compares them with the reviews the run holds from this tool on those items: new and
       changed ones are written, unchanged ones left alone, and the ones the tool no longer has (deleted,
       skipped) are removed. Reviews from anywhere else (files of other tools, the TUI) are not touched.

Quality gates (seed 003): gold items are items with a known answer (the input's gold column) that are
not in the queue; `--gold-share s` adds round(s·n/(1−s)) of them to n queued items, so they make a share
s of what is pushed, placed among the others at hashed positions. On pull, each reviewer's accuracy on
gold items and agreement on overlapping items (the adjudication where there is one, else the strict
majority of the other reviewers) is measured; a reviewer is flagged when either falls below
`min_accuracy`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from labeler.errors import ReviewError
from labeler.review.origin import claims
from labeler.store.rows import QueueEntry, Review

ENV = {
    "labelstudio": ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "a personal access token (Account & Settings)"),
    "argilla": ("ARGILLA_API_URL", "ARGILLA_API_KEY", "your API key (My settings in Argilla)"),
}


def credentials(tool: str, url: str | None = None, env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(url, key) for `tool` from --url or the environment; the key only from the environment."""
    env = os.environ if env is None else env
    url_var, key_var, what = ENV[tool]
    url = (url or env.get(url_var) or "").strip().rstrip("/")
    key = (env.get(key_var) or "").strip()
    if not url:
        raise ReviewError(f"no {tool} server: pass --url URL or set {url_var}")
    if not key:
        raise ReviewError(f"no {tool} credentials: set {key_var} to {what}")
    return url, key


@contextlib.contextmanager
def quiet_sdk(*loggers: str, show: bool = False) -> Iterator[None]:
    """Keep a review SDK's own output out of labeler's: its warnings (UserWarning ...), what it writes to
    stderr (tqdm progress bars) and its log records below CRITICAL on `loggers`. `show` (--debug) lets it
    all through. Errors still reach the caller as exceptions, which labeler turns into one line."""
    if show:
        yield
        return
    saved = [(lg, lg.level) for lg in map(logging.getLogger, loggers)]
    try:
        for lg, _ in saved:
            lg.setLevel(logging.CRITICAL)
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in saved:
            lg.setLevel(level)


def _hash(salt: str, item_id: str) -> str:
    return hashlib.sha256(f"{salt}\0{item_id}".encode()).hexdigest()


def gold_count(n_queue: int, share: float) -> int:
    """How many gold items make a share `share` of n_queue + gold."""
    if not 0 <= share < 1:
        raise ReviewError(f"--gold-share is a share of the pushed items: 0 <= s < 1, got {share}")
    return round(share * n_queue / (1 - share)) if share else 0


def pick_gold(gold: Mapping[str, str], queued: Iterable[str], *, n: int, salt: str) -> list[str]:
    """`n` gold items not in the queue, a fixed hashed choice (the same run picks the same ones)."""
    taken = set(queued)
    candidates = sorted((i for i in gold if i not in taken), key=lambda i: _hash(salt, i))
    return candidates[:n]


def push_order(
    entries: Sequence[QueueEntry], gold: Sequence[QueueEntry], *, blind: bool, salt: str
) -> list[QueueEntry]:
    """The order items reach annotators. Blind: a hashed shuffle of all (rank order would put the
    confident audit items last). Else the queue in rank order with gold items at hashed positions.
    Positions hash with their own salt, not the one `pick_gold` picks by (the smallest hashes): else the
    picked gold items would sort first, and reviewers would learn that the first tasks are the test."""
    place = f"{salt}\0place"
    if blind:
        return sorted([*entries, *gold], key=lambda e: _hash(place, e.item_id))
    ranked = sorted(entries, key=lambda e: e.rank)
    keyed = [(float(k), e) for k, e in enumerate(ranked)]
    keyed += [(int(_hash(place, e.item_id)[:8], 16) / 16**8 * len(ranked), e) for e in gold]
    return [e for _, e in sorted(keyed, key=lambda t: t[0])]


# --- pull --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pulled:
    """One submitted answer as the tool holds it. `key`: the tool's id of it (annotation id, response id)."""

    key: str
    item_id: str
    reviewer: str  # the tool's user id: stable across renames and exports
    label: str
    correction_reason: str | None = None
    note: str | None = None
    updated: str = ""  # ISO time of its last change
    adjudication: bool = False  # Label Studio ground truth / an Argilla adjudicator's response


def keep_latest(pulled: Iterable[Pulled]) -> tuple[dict[tuple[str, str], Pulled], int]:
    """One answer per (item, reviewer): adjudicating first, then the latest (updated, key). Also how many
    were dropped."""
    best: dict[tuple[str, str], Pulled] = {}
    n = 0
    for p in pulled:
        n += 1
        k = (p.item_id, p.reviewer)
        old = best.get(k)
        if old is None or (p.adjudication, p.updated, _num(p.key)) > (old.adjudication, old.updated, _num(old.key)):
            best[k] = p
    return best, n - len(best)


def _num(key: str) -> tuple[int, str]:
    return (int(key), "") if key.isdigit() else (0, key)


@dataclass(frozen=True)
class PullPlan:
    put: tuple[Review, ...]
    remove: tuple[tuple[str, str], ...]
    added: int
    changed: int
    unchanged: int
    duplicates: int
    answers: Mapping[str, Mapping[str, str]]  # item -> reviewer -> label: independent answers, gold items too
    adjudicated: Mapping[str, str]  # item -> the adjudicated label (the latest adjudication)
    gold_answered: int  # answers on gold items (for the quality gate; not stored as reviews)
    seen: Mapping[str, str]  # "item<TAB>reviewer" -> "key@updated" of the answer kept: what was pulled
    other_origin: int = 0  # answers left out: the same reviewer's review of the item from another project kept


def plan_pull(
    existing: Mapping[str, Sequence[Review]],
    pulled: Iterable[Pulled],
    *,
    source: str,
    items: Iterable[str],
    gold_items: Iterable[str] = (),
    labels: Sequence[str],
    reasons: Sequence[str] = (),
    origin: str | None = None,
    check: Callable[[Pulled], str] | None = None,
) -> PullPlan:
    """What to write and remove so the run's reviews from `source` on `items` are the pulled ones (see the
    module docstring). Labels and reasons are matched case-insensitively and stored as the task spells
    them; an unknown one is an error naming the answer. `origin` (labeler.review.origin): stored with each
    review; reviews of `source` from another origin are neither replaced nor removed. `check` (multi-label
    and span tasks) gives the canonical stored text of an answer's label or raises the error naming it."""
    scope, gold = set(items), set(gold_items)
    kept, dropped = keep_latest(p for p in pulled if p.item_id in scope or p.item_id in gold)
    canon = {x.lower(): x for x in labels}
    why = {x.lower(): x for x in reasons}
    answers: dict[str, dict[str, str]] = {}
    adjudicated: dict[str, tuple[str, str]] = {}
    gold_answered = 0
    new: dict[tuple[str, str], Review] = {}
    for (item, reviewer), p in kept.items():
        label = canon.get(p.label.strip().lower()) if check is None else check(p)
        reason = None if p.correction_reason is None else why.get(p.correction_reason.strip().lower())
        bad = ("label", p.label, labels) if label is None else ("correction reason", p.correction_reason, reasons)
        if label is None or (p.correction_reason is not None and reason is None):
            raise ReviewError(
                f"{source} answer {p.key} (item {item}): {bad[0]} {bad[1]!r} is not one of: {', '.join(bad[2])}; "
                "the project's labeling interface differs from the task: push again to a new project"
            )
        if p.adjudication:
            adjudicated[item] = max(adjudicated.get(item, ("", "")), (p.updated, label))
        else:
            answers.setdefault(item, {})[reviewer] = label
        if item in gold:
            gold_answered += 1
            continue
        new[(item, reviewer)] = Review(item, reviewer, label, reason, p.note, source, p.adjudication, origin)
    stored = {(r.item_id, r.reviewer): r for revs in existing.values() for r in revs}
    ours = {k for k, r in stored.items() if r.source == source and (origin is None or claims(r.origin, origin))}
    other = {k for k, r in stored.items() if r.source == source and k not in ours}
    kept_other = sum(k in other for k in new)
    new = {k: r for k, r in new.items() if k not in other}
    put = tuple(r for k, r in new.items() if stored.get(k) != r)
    added = sum(k not in stored for k in new)
    remove = tuple(k for k in ours if stored[k].item_id in scope and k not in new)
    seen = {f"{i}\t{r}": f"{p.key}@{p.updated}" for (i, r), p in kept.items()}
    adj = {i: label for i, (_, label) in adjudicated.items()}
    unchanged = len(new) - len(put)
    return PullPlan(
        put, remove, added, len(put) - added, unchanged, dropped, answers, adj, gold_answered, seen, kept_other
    )


# --- quality gates -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReviewerQuality:
    reviewer: str
    name: str  # the display name (e-mail or username) where the tool gives one
    gold_n: int
    gold_correct: int
    overlap_n: int
    overlap_agree: int
    flagged: bool

    @property
    def gold_accuracy(self) -> float | None:
        return self.gold_correct / self.gold_n if self.gold_n else None

    @property
    def overlap_agreement(self) -> float | None:
        return self.overlap_agree / self.overlap_n if self.overlap_n else None


def reviewer_quality(
    answers: Mapping[str, Mapping[str, str]],
    *,
    gold: Mapping[str, str],
    adjudicated: Mapping[str, str] | None = None,
    min_accuracy: float = 0.8,
    names: Mapping[str, str] | None = None,
) -> list[ReviewerQuality]:
    """Per reviewer: accuracy on gold items and agreement on overlapping items. `answers`: item ->
    reviewer -> label (independent answers, gold items included); `gold`: item -> known label;
    `adjudicated`: item -> the adjudicated label. Flagged: a measured rate below `min_accuracy`."""
    adjudicated = adjudicated or {}
    names = names or {}
    stats: dict[str, list[int]] = {}
    for item, by in answers.items():
        for reviewer, label in by.items():
            s = stats.setdefault(reviewer, [0, 0, 0, 0])
            if item in gold:
                s[0] += 1
                s[1] += label == gold[item]
                continue
            ref = adjudicated.get(item)
            if ref is None:
                others = Counter(v for r, v in by.items() if r != reviewer)
                top = others.most_common(2)
                if not top or (len(top) == 2 and top[0][1] == top[1][1]):
                    continue
                ref = top[0][0]
            s[2] += 1
            s[3] += label == ref
    out = []
    for reviewer in sorted(stats):
        g_n, g_ok, o_n, o_ok = stats[reviewer]
        low = (g_n and g_ok / g_n < min_accuracy) or (o_n and o_ok / o_n < min_accuracy)
        out.append(ReviewerQuality(reviewer, names.get(reviewer, reviewer), g_n, g_ok, o_n, o_ok, bool(low)))
    return out


def _pct(x: float | None, n: int) -> str:
    return "-" if x is None else f"{x:.1%} of {n}"


def format_quality(quality: Sequence[ReviewerQuality], *, min_accuracy: float) -> list[str]:
    """One line per reviewer for the pull summary."""
    lines = []
    for q in quality:
        who = q.reviewer if q.name == q.reviewer else f"{q.reviewer} ({q.name})"
        flag = f"  FLAGGED: below {min_accuracy:.0%}" if q.flagged else ""
        lines.append(
            f"  reviewer {who}: gold accuracy {_pct(q.gold_accuracy, q.gold_n)}, "
            f"agreement on overlaps {_pct(q.overlap_agreement, q.overlap_n)}{flag}"
        )
    return lines


def quality_json(quality: Sequence[ReviewerQuality]) -> list[dict[str, object]]:
    return [
        {
            "reviewer": q.reviewer,
            "name": q.name,
            "gold_n": q.gold_n,
            "gold_accuracy": None if q.gold_accuracy is None else round(q.gold_accuracy, 4),
            "overlap_n": q.overlap_n,
            "overlap_agreement": None if q.overlap_agreement is None else round(q.overlap_agreement, 4),
            "flagged": q.flagged,
        }
        for q in quality
    ]
