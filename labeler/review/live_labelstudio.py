"""Live sync with a Label Studio server: `labeler review push|pull RUN_DIR --tool labelstudio`.

Through Label Studio's documented REST API with httpx2 (already ours), not `label-studio-sdk`: the SDK
(2.1) brings about 75 packages and 500 MB (opencv, nltk, datamodel-code-generator, a second httpx) for
the seven endpoints used here:

    POST /api/token/refresh                    refresh token (LABEL_STUDIO_API_KEY) -> access token, Bearer
    GET  /api/projects?title=                  find the project by title; POST/PATCH /api/projects[/id]
    GET  /api/tasks?project=&fields=task_only  which items the project already has
    POST /api/projects/{id}/import             tasks with their predictions
    GET  /api/projects/{id}/export?exportType=JSON   every task's submitted annotations
    GET  /api/users/                           user id -> e-mail (the display name)

Push: the project (created or reused by title) gets our labeling config, maximum_annotations = overlap
for every task, and the queue (+ gold items) not yet in it. A task's data is its text and item id only,
nothing that tells an audit item (or a gold item) from another; where suggestions are shown every
member's label is a prediction under its own model version; with a blind audit no task has one, and the
order is a hashed shuffle. Pull: see labeler.review.live_common (latest per user and task, ground truth =
adjudication, deletions removed, gold answers to the quality gate). What was pushed and pulled is kept in
the run's meta under "labelstudio_sync"; credentials never are.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx2

from labeler.errors import ReviewError
from labeler.review.common import LABEL, NOTE, REASON, note_or_none
from labeler.review.labelstudio import ground_truth, labelstudio_config, labelstudio_project, labelstudio_tasks
from labeler.review.live_common import Pulled
from labeler.review.tasktype_formats import ls_results, ls_value
from labeler.store.rows import QueueEntry
from labeler.tasktypes import TaskType

META_KEY = "labelstudio_sync"
SOURCE = "labelstudio"


def _jwt_claims(token: str) -> dict[str, Any] | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


class LabelStudio:
    """A Label Studio server. `token`: a personal access token (a JWT refresh token, Label Studio >= 1.15)
    or a legacy API token. `transport` is for tests (httpx2.MockTransport)."""

    def __init__(self, url: str, token: str, *, transport: httpx2.BaseTransport | None = None, timeout: float = 60):
        self.url = url.rstrip("/")
        self._token = token
        self._claims = _jwt_claims(token)
        self._access: str | None = None
        self.http = httpx2.Client(base_url=self.url, transport=transport, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def _auth(self, *, renew: bool = False) -> str:
        if self._claims is None:
            return f"Token {self._token}"
        if self._claims.get("token_type") != "refresh":
            return f"Bearer {self._token}"
        if self._access is None or renew:
            r = self._send("POST", "/api/token/refresh", json={"refresh": self._token}, auth=None)
            if r.status_code in (401, 403):
                raise ReviewError(
                    f"Label Studio at {self.url} refused the token (expired or revoked): set LABEL_STUDIO_API_KEY "
                    "to a new personal access token (Account & Settings)"
                )
            self._access = str(self._check(r, "POST /api/token/refresh")["access"])
        return f"Bearer {self._access}"

    def _send(self, method: str, path: str, *, auth: str | None, **kw: Any) -> httpx2.Response:
        headers = {"Authorization": auth} if auth else {}
        try:
            return self.http.request(method, path, headers=headers, **kw)
        except httpx2.TransportError as exc:
            raise ReviewError(
                f"cannot reach Label Studio at {self.url} ({exc.__class__.__name__}); start it or pass --url / "
                "set LABEL_STUDIO_URL"
            ) from None

    def _check(self, r: httpx2.Response, what: str) -> Any:
        if r.status_code >= 400:
            body = r.text[:300].replace("\n", " ")
            hint = {
                401: "set LABEL_STUDIO_API_KEY to a valid personal access token",
                403: "use the token of a user who may manage this project",
                404: "check --url (the server's address, without /api) and --project",
            }.get(r.status_code, "see the server's message")
            raise ReviewError(f"Label Studio {what}: HTTP {r.status_code} {body}; {hint}")
        return r.json() if r.content else None

    def call(self, method: str, path: str, **kw: Any) -> Any:
        r = self._send(method, path, auth=self._auth(), **kw)
        if r.status_code == 401 and self._claims is not None and self._claims.get("token_type") == "refresh":
            r = self._send(method, path, auth=self._auth(renew=True), **kw)  # the access token expired
        return self._check(r, f"{method} {path}")

    # --- the few endpoints -------------------------------------------------------------------------
    def find_project(self, title: str) -> dict[str, Any] | None:
        page = self.call("GET", "/api/projects", params={"title": title, "page_size": 100})
        rows = page.get("results", []) if isinstance(page, Mapping) else page
        same = [p for p in rows if p.get("title") == title]
        return min(same, key=lambda p: p["id"]) if same else None

    def task_item_ids(self, project_id: int) -> dict[str, int]:
        """item id -> task id, for the project's tasks made by us (data.item_id)."""
        out: dict[str, int] = {}
        page = 1
        while True:
            params = {"project": project_id, "page": page, "page_size": 500, "fields": "task_only"}
            r = self._send("GET", "/api/tasks", auth=self._auth(), params=params)
            if r.status_code == 404:  # past the last page
                return out
            body = self._check(r, "GET /api/tasks")
            tasks = body.get("tasks", []) if isinstance(body, Mapping) else body
            for t in tasks:
                if "item_id" in (t.get("data") or {}):
                    out[str(t["data"]["item_id"])] = int(t["id"])
            if len(tasks) < 500:
                return out
            page += 1

    def users(self) -> dict[str, str]:
        body = self.call("GET", "/api/users/")
        rows = body.get("results", []) if isinstance(body, Mapping) else body
        return {str(u["id"]): str(u.get("email") or u.get("username") or u["id"]) for u in rows}

    def export(self, project_id: int) -> list[dict[str, Any]]:
        params = {"exportType": "JSON", "download_all_tasks": "false"}
        body = self.call("GET", f"/api/projects/{project_id}/export", params=params)
        return list(body or [])


# --- payloads (pure) -------------------------------------------------------------------------------
def model_versions(members: Sequence[str], agent: str) -> dict[str, str]:
    """member -> the model version its predictions carry: the agent alone with one member."""
    if len(members) <= 1:
        return dict.fromkeys(members, agent)
    return {m: f"{agent}/{m}" for m in members}


def live_tasks(
    entries: Sequence[QueueEntry], *, agent: str, suggest: frozenset[str], kind: TaskType | None = None
) -> list[dict[str, Any]]:
    """Tasks to import, in the order given: data = text + item id only; a prediction per member (its own
    model version) on the items in `suggest`, none elsewhere. `kind`: a multi-label or span task's type."""
    base = labelstudio_tasks(entries, model_version=agent, suggest=suggest, blind=True, kind=kind)
    out = []
    for e, task in zip(entries, base, strict=True):
        new: dict[str, Any] = {"data": {"text": e.text, "item_id": e.item_id}}
        if e.item_id in suggest and "predictions" in task:
            members = {m: v for m, v in e.member_labels.items() if v is not None}
            if len(members) > 1:
                versions = model_versions(list(members), agent)
                new["predictions"] = [
                    {
                        "model_version": versions[m],
                        "result": [
                            {"from_name": LABEL, "to_name": "text", "type": "choices", "value": {"choices": [v]}}
                        ]
                        if kind is None
                        else ls_results(kind, v, e.text, control=LABEL, score=None),
                    }
                    for m, v in members.items()
                ]
            else:
                new["predictions"] = task["predictions"]
        out.append(new)
    return out


def project_body(
    labels: Sequence[str],
    reasons: Sequence[str],
    *,
    title: str,
    instructions: str,
    overlap: int,
    shown: bool,
    kind: TaskType | None = None,
) -> dict[str, Any]:
    body = labelstudio_project(
        labelstudio_config(labels, reasons, kind=kind),
        title=title,
        instructions=instructions,
        overlap=overlap,
        predictions_shown=shown,
    )
    body["maximum_annotations"] = overlap
    return body


def _choice(value: Any) -> str | None:
    choices = value.get("choices") if isinstance(value, Mapping) else None
    return str(choices[0]) if isinstance(choices, list) and len(choices) == 1 else None


def pulled_from_export(tasks: Sequence[Mapping[str, Any]], *, kind: TaskType | None = None) -> list[Pulled]:
    """Submitted annotations of an export (cancelled = skipped ones are not answers; drafts are not in
    `annotations`). The author is named by user id; ground truth marks an adjudication. A multi-label or
    span task (`kind`): the label is the encoded annotation (every choice; every region, in code points)."""
    out = []
    for t in tasks:
        item = (t.get("data") or {}).get("item_id")
        if item is None:
            continue
        for ann in t.get("annotations") or []:
            if ann.get("was_cancelled"):
                continue
            got: dict[str, Any] = {}
            for res in ann.get("result") or []:
                value = res.get("value") or {}
                name = res.get("from_name")
                if "choices" in value:
                    got[name] = _choice(value)
                elif "labels" not in value:
                    got[name] = "\n".join(map(str, value.get("text") or []))
            if kind is not None:
                where = f"Label Studio annotation {ann.get('id')} (item {item})"
                results = ann.get("result") or []
                got[LABEL] = ls_value(kind, results, (t.get("data") or {}).get("text"), control=LABEL, where=where)
            user = ann.get("completed_by")
            user = user.get("id") if isinstance(user, Mapping) else user
            if got.get(LABEL) is None or user is None:
                continue
            out.append(
                Pulled(
                    key=str(ann["id"]),
                    item_id=str(item),
                    reviewer=str(user),
                    label=str(got[LABEL]),
                    correction_reason=got.get(REASON) or None,
                    note=note_or_none(got.get(NOTE)),
                    updated=str(ann.get("updated_at") or ann.get("created_at") or ""),
                    adjudication=ground_truth(ann),
                )
            )
    return out


# --- push and pull against a server ----------------------------------------------------------------
@dataclass(frozen=True)
class Pushed:
    project_id: int
    title: str
    created: bool
    new_tasks: int
    already: int
    queue: int
    gold: int
    suggested: int
    overlap: int


def push(
    ls: LabelStudio,
    ordered: Sequence[QueueEntry],
    *,
    labels: Sequence[str],
    reasons: Sequence[str],
    title: str,
    instructions: str,
    overlap: int,
    agent: str,
    suggest: frozenset[str],
    gold: frozenset[str],
    kind: TaskType | None = None,
) -> Pushed:
    """Create or update the project, then import the items it does not have yet (in `ordered` order)."""
    body = project_body(
        labels, reasons, title=title, instructions=instructions, overlap=overlap, shown=bool(suggest), kind=kind
    )
    project = ls.find_project(body["title"])
    created = project is None
    if project is None:
        project = ls.call("POST", "/api/projects", json=body)
    else:
        project = ls.call("PATCH", f"/api/projects/{project['id']}", json=body)
    pid = int(project["id"])
    have = ls.task_item_ids(pid)
    todo = [e for e in ordered if e.item_id not in have]
    tasks = live_tasks(todo, agent=agent, suggest=suggest, kind=kind)
    if tasks:
        ls.call("POST", f"/api/projects/{pid}/import", json=tasks)
    versions = sorted({p["model_version"] for t in tasks for p in t.get("predictions", [])})
    if versions:  # the model version whose predictions pre-fill the labeling form
        ls.call("PATCH", f"/api/projects/{pid}", json={"model_version": versions[0]})
    return Pushed(
        pid,
        str(project["title"]),
        created,
        len(todo),
        len(ordered) - len(todo),
        sum(e.item_id not in gold for e in ordered),
        sum(e.item_id in gold for e in ordered),
        sum(e.item_id in suggest for e in ordered),
        overlap,
    )


def pull(
    ls: LabelStudio, project_id: int, *, kind: TaskType | None = None
) -> tuple[list[Pulled], dict[str, str], float]:
    """The project's submitted annotations, its users (id -> e-mail) and the time they were read."""
    at = time.time()
    return pulled_from_export(ls.export(project_id), kind=kind), ls.users(), at
