"""Live sync with an Argilla 2.x server through its SDK (`pip install argilla==2.8.0 requests`: the SDK
imports requests without declaring it): `labeler review push|pull RUN_DIR --tool argilla`.

Push: the dataset (found by name in the workspace, else created in the first workspace the key sees, or
"labeler") gets our settings (labeler.review.argilla.argilla_settings: text field, questions "label",
"correction_reason", "note", no metadata, task distribution min_submitted = overlap) and the records it
does not have yet: fields.text, the item id as the record id, nothing else (no rank, no routing reasons);
the LLM's label is a suggestion (agent "labeler/<run>/<model>", argilla-server's pattern) where
suggestions are shown, on no record with a blind audit. An existing dataset whose overlap differs is
updated (argilla-server then re-computes record statuses in a background job: it needs its Redis).

Pull: every record's responses; only "submitted" ones count (drafts and discarded answers do not). One
response per user and record (Argilla keeps no more), the reviewer named by the user id, the username
kept as display name; responses of the users named in `adjudicators` are adjudications.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labeler.errors import ReviewError
from labeler.review.argilla import argilla_records, argilla_settings, response_counts
from labeler.review.common import LABEL, NOTE, REASON, note_or_none
from labeler.review.live_common import Pulled
from labeler.review.tasktype_formats import ag_value
from labeler.store.rows import QueueEntry
from labeler.tasktypes import TaskType

SOURCE = "argilla"
WORKSPACE = "labeler"


def _sdk() -> Any:
    try:
        import argilla as rg
    except ImportError:
        raise ReviewError(
            "the Argilla sync needs its SDK: pip install argilla==2.8.0 requests (in the environment labeler runs in)"
        ) from None
    return rg


@contextmanager
def sdk_errors(url: str, what: str) -> Iterator[None]:
    """Any SDK or HTTP error while doing `what` becomes one line naming the fix (a ReviewError passes)."""
    try:
        yield
    except ReviewError:
        raise
    except Exception as exc:
        name = exc.__class__.__name__
        if "Forbidden" in name or "403" in str(exc)[:300]:
            fix = (
                "the key's role may not do this (an annotator's key cannot read a whole dataset or create one): "
                "set ARGILLA_API_KEY to the owner's or an admin's key"
            )
        elif "Unauthorized" in name or "401" in str(exc)[:300]:
            fix = "the key is not accepted: check ARGILLA_API_KEY"
        else:
            fix = "check --url / ARGILLA_API_URL and the server's log, or rerun with --debug"
        raise ReviewError(f"Argilla at {url} failed to {what} ({name}); {fix}") from exc


def _client(url: str, key: str) -> Any:
    rg = _sdk()
    try:
        client = rg.Argilla(api_url=url, api_key=key, timeout=120)
        client.me  # noqa: B018 - the first call: fails here on a wrong address or key
    except Exception as exc:
        raise ReviewError(
            f"cannot use Argilla at {url} ({exc.__class__.__name__}: {str(exc)[:200]}); check --url / ARGILLA_API_URL "
            "and ARGILLA_API_KEY"
        ) from None
    return client


def live_settings(
    labels: Sequence[str], reasons: Sequence[str], *, guidelines: str, overlap: int, kind: TaskType | None = None
) -> dict[str, Any]:
    """The dataset settings: ours with no metadata at all, overlap as the task distribution."""
    return argilla_settings(labels, reasons, guidelines=guidelines, overlap=overlap, blind=True, kind=kind)


def live_records(
    entries: Sequence[QueueEntry], *, agent: str, suggest: Collection[str], kind: TaskType | None = None
) -> list[dict[str, Any]]:
    """Records as `rg.Record.from_dict` takes them: id = item id, fields.text, a suggestion on the items in
    `suggest`, no metadata (nothing that tells an audit or gold item from another)."""
    records = argilla_records(entries, agent=agent, suggest=suggest, blind=True, kind=kind)
    for r in records:
        r["metadata"] = {}
    return records


@dataclass(frozen=True)
class Pushed:
    dataset: str
    created: bool
    new: int
    already: int


def _settings(rg: Any, settings: dict[str, Any]) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "settings.json"
        path.write_text(json.dumps(settings), encoding="utf-8")
        return rg.Settings.from_json(path)


def _workspace(rg: Any, client: Any) -> Any:
    spaces = list(client.workspaces)
    if spaces:
        return spaces[0]
    return rg.Workspace(name=WORKSPACE, client=client).create()


def push(
    url: str,
    key: str,
    ordered: Sequence[QueueEntry],
    *,
    name: str,
    labels: Sequence[str],
    reasons: Sequence[str],
    instructions: str,
    overlap: int,
    agent: str,
    suggest: frozenset[str],
    gold: frozenset[str] = frozenset(),
    kind: TaskType | None = None,
) -> Pushed:
    """Create or reuse dataset `name`, then log the records it does not have yet, in `ordered` order.
    Any SDK or HTTP error is one line naming the fix."""
    with sdk_errors(url, f"push dataset {name!r}"):
        rg = _sdk()
        client = _client(url, key)
        settings = live_settings(labels, reasons, guidelines=instructions, overlap=overlap, kind=kind)
        ds = client.datasets(name=name)
        created = ds is None
        if ds is None:
            space = _workspace(rg, client)
            ds = rg.Dataset(name=name, settings=_settings(rg, settings), workspace=space, client=client)
            ds.create()
            have: set[str] = set()
        else:
            if ds.settings.distribution.min_submitted != overlap:
                ds.settings.distribution = rg.TaskDistribution(min_submitted=overlap)
                ds.update()
            have = {str(r.id) for r in ds.records(with_suggestions=False, with_responses=False)}
        todo = [e for e in ordered if e.item_id not in have]
        if todo:
            todo_records = live_records(todo, agent=agent, suggest=suggest, kind=kind)
            records = [rg.Record.from_dict(r, dataset=ds) for r in todo_records]
            ds.records.log(records)
        return Pushed(name, created, len(todo), len(ordered) - len(todo))


def pulled_from_records(
    records: Sequence[dict[str, Any]], *, adjudicators: Collection[str] = (), kind: TaskType | None = None
) -> list[Pulled]:
    """Submitted answers from records in the REST shape the SDK reads ({"id", "external_id", "responses":
    [{"user_id", "status", "values": {question: {"value"}}, "updated_at"}]}); see the module docstring. A
    multi-label or span task (`kind`): the label is the encoded list (no span question answered: none)."""
    out = []
    for rec in records:
        item = rec.get("external_id") or rec.get("id")
        for resp in rec.get("responses") or []:
            if not response_counts(resp.get("status")):
                continue
            values = {q: (v.get("value") if isinstance(v, dict) else v) for q, v in (resp.get("values") or {}).items()}
            user = str(resp["user_id"])
            if kind is not None:
                where = f"Argilla response of user {user} (item {item})"
                values[LABEL] = ag_value(kind, values.get(LABEL), where=where)
            if values.get(LABEL) in (None, ""):
                continue
            out.append(
                Pulled(
                    key=f"{rec.get('id')}:{user}",
                    item_id=str(item),
                    reviewer=user,
                    label=str(values[LABEL]),
                    correction_reason=values.get(REASON) or None,
                    note=note_or_none(values.get(NOTE)),
                    updated=str(resp.get("updated_at") or ""),
                    adjudication=user in adjudicators,
                )
            )
    return out


def _as_rest(record: Any) -> dict[str, Any]:
    """An SDK record as the REST shape `pulled_from_records` reads (responses grouped per user)."""
    by_user: dict[str, dict[str, Any]] = {}
    for resp in record.responses:
        user = str(resp.user_id)
        status = getattr(resp.status, "value", resp.status)
        entry = by_user.setdefault(user, {"user_id": user, "status": status, "values": {}})
        entry["values"][resp.question_name] = {"value": resp.value}
    return {"id": str(record._server_id), "external_id": str(record.id), "responses": list(by_user.values())}


def _pull(
    url: str, key: str, name: str, *, adjudicators: Collection[str] = (), kind: TaskType | None = None
) -> tuple[list[Pulled], dict[str, str], float]:
    """The dataset's submitted answers, its users (id -> username) and the time they were read."""
    client = _client(url, key)
    at = time.time()
    ds = client.datasets(name=name)
    if ds is None:
        raise ReviewError(
            f"Argilla at {url} has no dataset {name!r}; push it first (labeler review push --tool argilla)"
        )
    users = {str(u.id): str(u.username) for u in client.users}
    by_name = {v: k for k, v in users.items()}
    adj = {by_name.get(a, a) for a in adjudicators}
    rest = [_as_rest(r) for r in ds.records(with_suggestions=False, with_responses=True)]
    return pulled_from_records(rest, adjudicators=adj, kind=kind), users, at


def pull(
    url: str, key: str, name: str, *, adjudicators: Collection[str] = (), kind: TaskType | None = None
) -> tuple[list[Pulled], dict[str, str], float]:
    """`_pull`, with any SDK or HTTP error (an annotator's key: ForbiddenError) as one line naming the fix."""
    with sdk_errors(url, f"pull dataset {name!r}"):
        return _pull(url, key, name, adjudicators=adjudicators, kind=kind)
