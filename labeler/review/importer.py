"""Importing reviews: read a tool's export, check every answer, then sync the run's reviews with it.

`import_reviews`, step by step:
    1. read the file (labeler.review.answers: the format, response statuses, reviewer ids); a file with
       no answer is an error saying why
    2. name the reviewers: the tool's stable id (Label Studio user id, Argilla user id, the CSV's reviewer
       column), renamed by --reviewer-map (CSV rows "id,name"; the id may also be a Label Studio e-mail);
       answers that name nobody get --reviewer
    3. one answer per reviewer and item: the latest (annotation time, then annotation id or row) is kept;
       the summary counts the others as duplicates
    4. check every answer against the run (item ids, labels, correction reasons): one error imports nothing
    5. sync, in one transaction: new answers are added, changed ones replaced, and the answers this source
       gave before on the items the file lists, which the file no longer holds, are removed (a reviewer
       deleted or skipped them). A tool's export lists the whole project, so its scope is the file's
       items; a CSV may be one reviewer's, so its scope is the file's items × the reviewers it names.
       Items the file does not list, and reviews from other sources (the TUI, another tool, adjudication,
       a CSV for the tools and the reverse), are never touched.
    Every review carries its origin (labeler.review.origin: tool, server, project). A file of another
    project than the run's (the one it was pushed to, else its earlier imports) is refused unless
    `other_project`; even then it only syncs its own project's reviews: it never replaces or removes a
    review from another project. A file that names no project (JSON-MIN, CSV) is taken to be the run's.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from labeler.errors import ReviewError
from labeler.review.agreement import Agreement, run_agreement
from labeler.review.answers import check_answers, read_answers
from labeler.review.common import LABEL, Answer, Parsed
from labeler.review.origin import Origin, claims
from labeler.review.tasktype_formats import item_texts, run_kind
from labeler.store import RunStore
from labeler.store.rows import Review


@dataclass(frozen=True)
class ImportSummary:
    reviews: int  # answers in the file (after duplicates were dropped)
    items: int
    reviewers: tuple[str, ...]
    corrections: int  # answers whose label differs from the queued LLM label
    fmt: str
    agreement: Agreement
    added: int = 0  # (item, reviewer) answers not stored before
    changed: int = 0  # stored before with another label, reason, note or source
    unchanged: int = 0
    removed: int = 0  # answers of this source and project on the file's items that the file no longer holds
    duplicates: int = 0  # earlier answers of one reviewer to one item, dropped for the latest
    adjudicated: int = 0  # answers that adjudicate (Label Studio's ground truth, or --adjudication)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class SyncPlan:
    put: tuple[Review, ...]
    remove: tuple[tuple[str, str], ...]
    added: int
    changed: int
    unchanged: int
    other_origin: int = 0  # answers left out: the same reviewer's review of the item from another project is kept


def read_reviewer_map(path: Path) -> dict[str, str]:
    """id -> name from a CSV of "id,name" rows (a header row "id,name" is allowed). Ids compare
    case-insensitively (e-mails)."""
    if not path.is_file():
        raise ReviewError(f"--reviewer-map {path} not found; pass a CSV of id,name rows")
    out: dict[str, str] = {}
    with path.open(encoding="utf-8-sig", newline="") as fh:
        for n, row in enumerate(csv.reader(fh), start=1):
            cells = [c.strip() for c in row]
            if not any(cells) or (n == 1 and [c.lower() for c in cells[:2]] == ["id", "name"]):
                continue
            if len(cells) < 2 or not cells[0] or not cells[1]:
                raise ReviewError(f"{path.name} line {n}: expected id,name; got {','.join(row)!r}")
            out[cells[0].lower()] = cells[1]
    return out


def _renamer(names: Mapping[str, str], aliases: Mapping[str, str]) -> Callable[[str | None], str | None]:
    table = dict(names)
    for email, uid in aliases.items():  # an e-mail in the map names the user id it stands for
        if email.lower() in table and uid.lower() not in table:
            table[uid.lower()] = table[email.lower()]

    def rename(reviewer: str | None) -> str | None:
        return None if reviewer is None else table.get(reviewer.lower(), reviewer)

    return rename


def keep_latest(answers: Iterable[Answer]) -> tuple[list[Answer], int]:
    """One answer per (item, reviewer): the one with the largest `order` (the later in the file on a tie),
    in file order. Returns them and how many were dropped."""
    best: dict[tuple[str, str | None], tuple[tuple[str, float], int, Answer]] = {}
    n = 0
    for n, a in enumerate(answers, start=1):
        key = (a.item_id, a.reviewer)
        if key not in best or (a.order, n) >= best[key][:2]:
            best[key] = (a.order, n, a)
    kept = sorted(best.values(), key=lambda t: t[1])
    return [a for _, _, a in kept], n - len(kept)


def plan_sync(
    existing: Mapping[str, Sequence[Review]],
    new: Sequence[Review],
    *,
    source: str,
    items: frozenset[str],
    reviewers: frozenset[str] | None,
    origin: str | None = None,
) -> SyncPlan:
    """What to write and remove so the stored reviews of `source` (from `origin`, where given) on `items`
    (and, for a CSV, `reviewers`) are the `new` ones; everything else stays. A stored review of `source`
    from another origin is neither replaced nor removed: the new answer for it is left out and counted."""
    stored = {(r.item_id, r.reviewer): r for revs in existing.values() for r in revs}
    other = {
        k for k, r in stored.items() if r.source == source and origin is not None and not claims(r.origin, origin)
    }
    kept_other = sum((r.item_id, r.reviewer) in other for r in new)
    new = [r for r in new if (r.item_id, r.reviewer) not in other]
    keys = {(r.item_id, r.reviewer) for r in new}
    put = [r for r in new if stored.get((r.item_id, r.reviewer)) != r]
    added = sum((r.item_id, r.reviewer) not in stored for r in new)
    remove = tuple(
        k
        for k, r in stored.items()
        if r.source == source
        and k not in other
        and r.item_id in items
        and (reviewers is None or r.reviewer in reviewers)
        and k not in keys
    )
    return SyncPlan(tuple(put), remove, added, len(put) - added, len(new) - len(put), kept_other)


def file_origin(store: RunStore, parsed: Parsed, *, other_project: bool = False) -> Origin:
    """The origin of a file's reviews: the run's project (where the run was pushed, else its earliest
    imported project of the tool) when the file is of it or names none; the file's own project with
    `other_project`; else a ReviewError naming both."""
    from labeler.review.live_sync import TOOLS, run_origin

    tool = parsed.tool
    if tool not in TOOLS:
        return Origin(tool)
    ours = run_origin(store, tool)
    if ours is None:
        earlier = (r.origin for revs in store.reviews().values() for r in revs if r.source == tool and r.origin)
        ours = next((o for o in map(Origin.parse, earlier) if o.project is not None), None)
    if parsed.project is None or (ours is not None and ours.project == parsed.project):
        return ours or Origin(tool)
    if ours is None:
        return Origin(tool, None, parsed.project)
    if not other_project:
        what = "dataset" if tool == "argilla" else "project"
        raise ReviewError(
            f"this run is reviewed through {ours.describe()}; the file is {what} {parsed.project} — "
            "pass --other-project to import it anyway"
        )
    return Origin(tool, None, parsed.project)


def import_reviews(
    run_dir: Path,
    path: Path,
    *,
    fmt: str | None = None,
    reviewer: str | None = None,
    adjudication: bool = False,
    include_drafts: bool = False,
    label_control: str = LABEL,
    reviewer_map: Path | None = None,
    other_project: bool = False,
) -> ImportSummary:
    """Read a review tool's export, validate every answer, then sync them into the run (all or none).
    `other_project`: import a file of another project than the run's (see the module docstring)."""
    kind = run_kind(run_dir)  # multi-label / span tasks: labeler.review.tasktype_formats (None: single label)
    parsed = read_answers(path, fmt, label_control=label_control, include_drafts=include_drafts, kind=kind)
    rename = _renamer(read_reviewer_map(reviewer_map) if reviewer_map else {}, parsed.aliases)
    answers, duplicates = keep_latest(replace(a, reviewer=rename(a.reviewer or reviewer)) for a in parsed.answers)
    scope = None
    if parsed.reviewers is not None:
        scope = frozenset(name for r in parsed.reviewers if (name := rename(r or reviewer)) is not None)
    source = "adjudication" if adjudication else parsed.tool
    store = RunStore.open(run_dir)
    try:
        task = store.task()
        reviews = check_answers(
            answers,
            item_ids=store.item_ids(),
            labels=task.label_names,
            reasons=task.review.reasons,
            default_reviewer=reviewer,
            source=source,
            adjudication=adjudication,
            kind=kind,
            texts=item_texts(store) if kind is not None else None,
        )
        origin = file_origin(store, parsed, other_project=other_project)
        reviews = [replace(r, origin=origin.key()) for r in reviews]
        stored = store.reviews()
        plan = plan_sync(stored, reviews, source=source, items=parsed.items, reviewers=scope, origin=origin.key())
        store.sync_reviews(plan.put, plan.remove)
        llm = {e.item_id: e.llm_label for e in store.queue()}
        warnings = list(parsed.warnings)
        unlisted = {r.item_id for revs in stored.values() for r in revs if r.source == source} - parsed.items
        if parsed.tool == "labelstudio" and unlisted:
            warnings.append(
                f"{len(unlisted)} items reviewed before are not in this file, so their reviews are kept (Label "
                "Studio's default export leaves out tasks with no annotation): removals need the export with all "
                "tasks (download_all_tasks=true) or `labeler review pull`"
            )
        if duplicates:
            warnings.append(f"{duplicates} earlier answers of a reviewer to the same item dropped (the latest kept)")
        if plan.other_origin:
            warnings.append(
                f"{plan.other_origin} answers of {origin.describe()} left out: the same reviewer answered the same "
                "item in another project, and that review is kept"
            )
        return ImportSummary(
            reviews=len(reviews),
            items=len({r.item_id for r in reviews}),
            reviewers=tuple(sorted({r.reviewer for r in reviews})),
            corrections=sum(r.item_id in llm and llm[r.item_id] != r.label for r in reviews),
            fmt=parsed.fmt,
            agreement=run_agreement(store, task.label_names),
            added=plan.added,
            changed=len(plan.put) - plan.added,
            unchanged=plan.unchanged,
            removed=len(plan.remove),
            duplicates=duplicates,
            adjudicated=sum(r.adjudication for r in reviews),
            warnings=tuple(warnings),
        )
    finally:
        store.close()
