"""`labeler review push` / `pull`: the run's side of the live sync (the queue and gold items out, the answers
back in, what was pushed and pulled kept in the run's meta), for either tool.

    push_run  RUN_DIR -> the tool: the queue (+ gold items), blind-audit rule, overlap, per-member suggestions
    pull_run  the tool -> RUN_DIR: answers synced into the reviews (labeler.review.live_common's rule),
              per-reviewer quality measured and flagged

Meta key "<tool>_sync" (JSON): {"last": project key, "projects": {"<server> <project>": {"url", "project",
"title", "pushed": [item ids], "gold": [item ids], "overlap", "blind", "pushed_at", "last_pull",
"seen": {"item<TAB>reviewer": "answer id@updated"}, "users": {id: name}, "quality": [...],
"more_reviews": [item ids whose task overlap a push raised]}}}. Server
addresses and user names are kept; tokens never are.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labeler.errors import ReviewError
from labeler.review.argilla import suggestion_agent
from labeler.review.live_common import (
    PullPlan,
    ReviewerQuality,
    credentials,
    gold_count,
    pick_gold,
    plan_pull,
    push_order,
    quality_json,
    quiet_sdk,
    reviewer_quality,
)
from labeler.review.origin import Origin, server_key
from labeler.review.queue_export import shows_suggestion
from labeler.review.tasktype_formats import kind_of, pull_check
from labeler.store import RunStore
from labeler.store.rows import QueueEntry

TOOLS = ("labelstudio", "argilla")


def _pkey(url: str, project: object) -> str:
    return f"{server_key(url)} {project}"


def _meta(store: RunStore, tool: str) -> dict[str, Any]:
    """The tool's sync meta, its projects keyed by server and id (runs that keyed them by the URL as
    spelled are re-keyed; two spellings of one server merge, the later push winning)."""
    raw = store.get_meta(f"{tool}_sync")
    data: dict[str, Any] = json.loads(raw) if raw else {}
    old: dict[str, Any] = data.get("projects", {})
    data["projects"] = {}
    for k, entry in old.items():
        url, project = k.rsplit(" ", 1) if " " in k else (k, "")
        data["projects"][_pkey(entry.get("url", url), entry.get("project", project))] = entry
    last = old.get(data.get("last", ""))
    if last is not None:
        data["last"] = _pkey(last.get("url", ""), last.get("project", ""))
    return data


def run_origin(store: RunStore, tool: str) -> Origin | None:
    """The project the run was last pushed to in `tool` (live sync), as an Origin; None if never pushed."""
    meta = _meta(store, tool)
    entry = meta["projects"].get(meta.get("last", ""))
    return None if entry is None else Origin(tool, server_key(entry["url"]), str(entry["project"]))


def _gold_entries(store: RunStore, ids: set[str]) -> list[QueueEntry]:
    """Gold items as queue entries (the LLM's answer, for a suggestion that looks like any other)."""
    from labeler.record import records

    out = []
    for rec in records(store):
        if rec.id in ids:
            out.append(
                QueueEntry(
                    rec.id, 0, (), 0.0, False, rec.label, rec.confidence, None, None, rec.member_labels, rec.text
                )
            )
    return out


@dataclass(frozen=True)
class PushSummary:
    tool: str
    url: str
    project: str  # the project id (Label Studio) or dataset name (Argilla)
    title: str
    created: bool
    new: int
    already: int
    queue: int
    gold: int
    suggested: int
    overlap: int
    blind: bool
    warnings: tuple[str, ...] = ()
    more_reviews: int = 0  # tasks already in the project that now ask one more reviewer (labelstudio)


MORE_REVIEWS = "more_reviews"  # the queue reason of `labeler route --more-reviews` (labeler.aggregate.requeue)


def raise_overlap(client: Any, project_id: int, entries: Sequence[QueueEntry], *, raised: set[str]) -> list[str]:
    """Label Studio: each `more_reviews` item already in the project, and not raised there before, asks one
    more annotation than it has (the task's own overlap, which Label Studio's labeling stream honours).
    Returns the items raised now; pushing again raises none of them twice."""
    more = [e.item_id for e in entries if MORE_REVIEWS in e.reasons and e.item_id not in raised]
    if not more:
        return []
    task_ids = client.task_item_ids(project_id)
    out = []
    for item in more:
        if item not in task_ids:
            continue
        task = client.call("GET", f"/api/tasks/{task_ids[item]}")
        done = int(task.get("total_annotations") or 0)
        if done == 0:  # not annotated yet: the project's overlap still stands for it
            continue
        want = max(done + 1, int(task.get("overlap") or 1))
        client.call("PATCH", f"/api/tasks/{task_ids[item]}", json={"overlap": want, "is_labeled": done >= want})
        out.append(item)
    return out


def argilla_more_reviews(n: int, dataset: str, run_dir: Path) -> str:
    """The one line for `more_reviews` items an Argilla dataset already has: argilla-server counts one
    number of submissions for every record of a dataset (TaskDistribution min_submitted; a record is
    completed at that many) and keeps none per record, so a push cannot ask one record for another."""
    return (
        f"Argilla asks every record of a dataset for the same number of reviewers (min_submitted), not one "
        f"record for more: the {n} item(s) routed for more reviews that dataset {dataset!r} already has get "
        f"no further reviewer there; review them with `labeler review tui {run_dir}` or `labeler review serve "
        f"{run_dir}` (a reviewer sees only the items they have not answered)"
    )


def push_run(
    run_dir: Path,
    *,
    tool: str,
    url: str | None = None,
    project: str | None = None,
    overlap: int = 1,
    blind_audit: bool = False,
    no_suggestion: bool | None = None,
    gold_share: float = 0.0,
    env: Mapping[str, str] | None = None,
    transport: Any = None,
    sdk_output: bool = False,
) -> PushSummary:
    """Send the run's queue (and gold items) to a project of `tool`, creating or reusing it by title.
    `sdk_output` (--debug): let the Argilla SDK's warnings, progress bars and log lines through."""
    if tool not in TOOLS:
        raise ReviewError(f"unknown review tool {tool!r}; use one of {', '.join(TOOLS)}")
    if overlap < 1:
        raise ReviewError(f"--overlap is the number of reviewers per item: at least 1, got {overlap}")
    base, key = credentials(tool, url, env)
    store = RunStore.open(run_dir)
    try:
        task = store.task()
        entries = store.queue()
        if not entries:
            raise ReviewError(f"the queue of {run_dir} is empty; run `labeler route {run_dir}` first")
        manifest = store.manifest
        run_id = str(manifest["run_id"])
        warnings: list[str] = []
        want = gold_count(len(entries), gold_share)
        gold_ids = pick_gold(store.gold_labels(), (e.item_id for e in entries), n=want, salt=run_id)
        if len(gold_ids) < want:
            warnings.append(
                f"only {len(gold_ids)} of the {want} gold items asked for exist outside the queue "
                "(the input's gold column)"
            )
        gold = _gold_entries(store, set(gold_ids))
        hide = (not task.review.show_suggestion) if no_suggestion is None else no_suggestion
        ordered = push_order(entries, gold, blind=blind_audit, salt=run_id)
        suggest = frozenset(
            e.item_id for e in ordered if shows_suggestion(e, blind_audit=blind_audit, no_suggestion=hide)
        )
        model = (manifest["members"][0].get("endpoint") or {}).get("model") or "llm"
        agent = suggestion_agent(run_id, str(model))
        title = project or f"{task.name} review {run_id}"
        common = dict(
            labels=task.label_names,
            reasons=task.review.reasons,
            instructions=task.instructions,
            overlap=overlap,
            agent=agent,
            suggest=suggest,
            gold=frozenset(gold_ids),
            kind=kind_of(task),  # multi-label / span tasks (labeler.review.tasktype_formats); None: single
        )
        if tool == "labelstudio":
            from labeler.review import live_labelstudio as ls

            client = ls.LabelStudio(base, key, transport=transport)
            try:
                p = ls.push(client, ordered, title=title, **common)  # type: ignore[arg-type]
                entry0 = _meta(store, tool)["projects"].get(_pkey(base, p.project_id), {})
                more = raise_overlap(client, p.project_id, entries, raised=set(entry0.get("more_reviews", [])))
            finally:
                client.close()
            pid, ptitle, created, new, already = str(p.project_id), p.title, p.created, p.new_tasks, p.already
        else:
            from labeler.review import live_argilla as ag

            with quiet_sdk("argilla", show=sdk_output):
                a = ag.push(base, key, ordered, name=title, **common)  # type: ignore[arg-type]
            pid, ptitle, created, new, already = a.dataset, a.dataset, a.created, a.new, a.already
            more = []
            entry0 = _meta(store, tool)["projects"].get(_pkey(base, pid), {})
            n_more = sum(MORE_REVIEWS in e.reasons and e.item_id in set(entry0.get("pushed", [])) for e in entries)
            if n_more:
                warnings.append(argilla_more_reviews(n_more, pid, run_dir))
        meta = _meta(store, tool)
        pkey = _pkey(base, pid)
        entry = meta["projects"].setdefault(pkey, {"seen": {}, "users": {}, "pushed": [], "gold": []})
        entry.update(url=base, project=pid, title=ptitle, overlap=overlap, blind=blind_audit, pushed_at=time.time())
        entry["pushed"] = sorted(set(entry["pushed"]) | {e.item_id for e in entries})
        entry["gold"] = sorted(set(entry["gold"]) | set(gold_ids))
        if more:
            entry["more_reviews"] = sorted(set(entry.get("more_reviews", [])) | set(more))
        meta["last"] = pkey
        store.set_meta(f"{tool}_sync", json.dumps(meta))
    finally:
        store.close()
    return PushSummary(
        tool,
        base,
        pid,
        ptitle,
        created,
        new,
        already,
        len(entries),
        len(gold),
        len(suggest),
        overlap,
        blind_audit,
        tuple(warnings),
        len(more),
    )


@dataclass(frozen=True)
class PullSummary:
    tool: str
    url: str
    project: str
    title: str
    answers: int  # submitted answers read from the tool (every user, every item of the project)
    plan: PullPlan
    removed: int
    reviewers: Mapping[str, str]  # id -> display name
    quality: tuple[ReviewerQuality, ...] = field(default_factory=tuple)
    min_accuracy: float = 0.8


def _project_entry(meta: dict[str, Any], tool: str, run_dir: Path, project: str | None, url: str) -> dict[str, Any]:
    projects: dict[str, Any] = meta["projects"]
    server = server_key(url)
    if project is not None:
        named = [p for p in projects.values() if project in (p["title"], str(p["project"]))]
        hits = [p for p in named if server_key(p["url"]) == server]
        if hits:
            return dict(hits[0])
        raise ReviewError(f"{run_dir} never pushed to {tool} project {project!r} at {url}; push it first")
    last = meta.get("last")
    if last not in projects or server_key(projects[last]["url"]) != server:
        raise ReviewError(
            f"{run_dir} was not pushed to {tool} at {url}: run `labeler review push {run_dir} --tool {tool}`"
        )
    return dict(projects[last])


def pull_run(
    run_dir: Path,
    *,
    tool: str,
    url: str | None = None,
    project: str | None = None,
    min_accuracy: float = 0.8,
    adjudicators: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    transport: Any = None,
    sdk_output: bool = False,
) -> PullSummary:
    """Bring the tool's submitted answers into the run's reviews (added, changed, removed) and measure
    every reviewer on gold items and overlaps. `adjudicators` (Argilla user names or ids): their
    responses settle items (Label Studio marks adjudications itself: ground-truth annotations)."""
    if tool not in TOOLS:
        raise ReviewError(f"unknown review tool {tool!r}; use one of {', '.join(TOOLS)}")
    base, key = credentials(tool, url, env)
    store = RunStore.open(run_dir)
    try:
        task = store.task()
        meta = _meta(store, tool)
        entry = _project_entry(meta, tool, run_dir, project, base)
        if tool == "labelstudio":
            from labeler.review import live_labelstudio as ls

            client = ls.LabelStudio(base, key, transport=transport)
            try:
                pulled, users, at = ls.pull(client, int(entry["project"]), kind=kind_of(task))
            finally:
                client.close()
        else:
            from labeler.review import live_argilla as ag

            with quiet_sdk("argilla", show=sdk_output):
                pulled, users, at = ag.pull(
                    base, key, str(entry["project"]), adjudicators=adjudicators, kind=kind_of(task)
                )
        plan = plan_pull(
            store.reviews(),
            pulled,
            source=tool,
            items=entry["pushed"],
            gold_items=entry["gold"],
            labels=task.label_names,
            reasons=task.review.reasons,
            origin=Origin(tool, server_key(base), str(entry["project"])).key(),
            check=pull_check(kind_of(task), store),
        )
        _, removed = store.sync_reviews(plan.put, plan.remove)
        gold = {i: g for i, g in store.gold_labels().items() if i in set(entry["gold"])}
        names = {**entry.get("users", {}), **users}
        quality = reviewer_quality(
            plan.answers, gold=gold, adjudicated=plan.adjudicated, min_accuracy=min_accuracy, names=names
        )
        entry.update(last_pull=at, seen=dict(plan.seen), users=names, quality=quality_json(quality))
        entry["min_accuracy"] = min_accuracy
        meta["projects"][_pkey(base, entry["project"])] = entry
        store.set_meta(f"{tool}_sync", json.dumps(meta))
    finally:
        store.close()
    reviewers = {r: names.get(r, r) for by in plan.answers.values() for r in by}
    return PullSummary(
        tool,
        base,
        str(entry["project"]),
        str(entry["title"]),
        len(pulled),
        plan,
        removed,
        reviewers,
        tuple(quality),
        min_accuracy,
    )
