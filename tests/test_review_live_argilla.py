"""Argilla, for real where it can be: our settings and records validated by argilla-server 2.8's own request
schemas and the argilla 2.8.0 SDK's classes, and the live push/pull run against the real argilla-server
(FastAPI app, SQLite, its validation and task distribution) with an in-memory search engine in place of
Elasticsearch and no Redis (tests/argilla_server_memory.py). Both live in their own venv (.ci/argilla.sh,
about 2 minutes the first time); labeler's live_argilla runs inside it, in a subprocess.

Run: `python -m pytest -m argilla tests/test_review_live_argilla.py`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from live_runs import export_rows, make_run
from test_review import wrong

from labeler.store import RunStore

pytestmark = pytest.mark.argilla
ROOT = Path(__file__).resolve().parents[1]
OWNER_KEY = "argilla.apikey"  # argilla-server's default owner (`database users create_default`)


@pytest.fixture(scope="module")
def venv_python() -> Path:
    got = subprocess.run(["bash", str(ROOT / ".ci" / "argilla.sh")], capture_output=True, text=True, timeout=1800)
    assert got.returncode == 0, f"installing argilla failed:\n{got.stderr[-3000:]}"
    return Path(got.stdout.strip().splitlines()[-1])


def in_venv(python: Path, code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT), "HF_HUB_DISABLE_TELEMETRY": "1"}
    return subprocess.run([str(python), "-c", code, *args], capture_output=True, text=True, env=full, timeout=600)


VALIDATE = """
import json, sys, tempfile, pathlib
from labeler.review.live_argilla import live_records, live_settings
from labeler.store.rows import QueueEntry
from argilla_server.api.schemas.v1.datasets import DatasetCreate
from argilla_server.api.schemas.v1.fields import FieldCreate
from argilla_server.api.schemas.v1.questions import QuestionCreate
from argilla_server.api.schemas.v1.records_bulk import RecordsBulkUpsert
import argilla as rg

labels, reasons = ["business", "sport", "tech"], ["guideline gap", "ambiguous", "model error", "other"]
entries = [QueueEntry(f"i{k}", k + 1, ("audit",), 1.0, k % 2 == 0, labels[k % 3], 0.42899999, None, None,
                      {"m": labels[k % 3]}, f"text {k}") for k in range(6)]
settings = live_settings(labels, reasons, guidelines="Choose.", overlap=2)
DatasetCreate(name="d", guidelines=settings["guidelines"], allow_extra_metadata=settings["allow_extra_metadata"],
              distribution=settings["distribution"], workspace_id="00000000-0000-0000-0000-000000000001")
for f in settings["fields"]:
    FieldCreate(**{k: v for k, v in f.items() if k != "description"})
for q in settings["questions"]:
    QuestionCreate(**q)
agent = "labeler/r1/qwen2.5:7b (x)"
from labeler.review.argilla import suggestion_agent
records = live_records(entries, agent=suggestion_agent("r1", "qwen2.5:7b (x)"), suggest={"i1", "i2"})
question_ids = {"label": "00000000-0000-0000-0000-000000000002"}
items = []
for r in records:
    sugg = [{"question_id": question_ids[q], **s} for q, s in r["suggestions"].items()]
    meta = r["metadata"] or None
    items.append({"external_id": r["id"], "fields": r["fields"], "metadata": meta, "suggestions": sugg})
RecordsBulkUpsert(items=items)
path = pathlib.Path(tempfile.mkdtemp()) / "settings.json"
path.write_text(json.dumps(settings))
s = rg.Settings.from_json(path)
assert s.distribution.min_submitted == 2 and [q.name for q in s.questions] == ["label", "correction_reason", "note"]
for r in records:
    rec = rg.Record.from_dict(r)
    assert str(rec.id) == r["id"]
print("ok", len(records), sum(bool(r["suggestions"]) for r in records))
"""


@pytest.fixture(scope="module")
def server(venv_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("argilla")
    env = {
        **os.environ,
        "ARGILLA_HOME_PATH": str(home),
        "ARGILLA_DATABASE_URL": f"sqlite+aiosqlite:///{home}/argilla.db",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    for cmd in (["database", "migrate"], ["database", "users", "create_default"]):
        got = subprocess.run([str(venv_python), "-m", "argilla_server", *cmd], env=env, capture_output=True, text=True)
        assert got.returncode == 0, got.stderr[-2000:]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (home / "server.log").open("w")
    launcher = str(ROOT / "tests" / "argilla_server_memory.py")
    proc = subprocess.Popen(
        [str(venv_python), launcher, str(port)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx2.get(f"{url}/api/v1/me", headers={"X-Argilla-Api-Key": OWNER_KEY}).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"argilla-server did not start:\n{(home / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def test_settings_and_records_pass_argilla_servers_schemas_and_the_sdk(venv_python: Path, server: str) -> None:
    """The SDK's settings classes need a client that answers (its default one): the server below."""
    got = in_venv(venv_python, VALIDATE, env={"ARGILLA_API_URL": server, "ARGILLA_API_KEY": OWNER_KEY})
    assert got.returncode == 0, got.stderr[-3000:]
    assert got.stdout.split() == ["ok", "6", "2"]


CLI = """
import argparse, sys
from labeler.cli.review_live import register
from labeler.errors import LabelerError
p = argparse.ArgumentParser(prog="labeler review")
register(p.add_subparsers(required=True))
a = p.parse_args(sys.argv[1:])
try:
    sys.exit(a.fn(a))
except LabelerError as exc:
    print(f"labeler: error: {exc}")
    sys.exit(2)
"""


def review(python: Path, url: str, *args: str) -> str:
    got = in_venv(python, CLI, *args, env={"ARGILLA_API_URL": url, "ARGILLA_API_KEY": OWNER_KEY})
    assert got.returncode == 0, got.stdout + got.stderr[-3000:]
    noise = [n for n in ("Sending records", "Warning", "WARNING", "argilla.sdk") if n in got.stderr]
    assert not noise, f"the SDK's own output reached the terminal: {got.stderr[-2000:]}"  # issue 23
    return got.stdout


def add_annotator(url: str, owner: httpx2.Client, name: str, workspace: str) -> httpx2.Client:
    r = owner.post("/api/v1/users", json={"username": name, "password": f"{name}-pass-1", "first_name": name,
                                          "role": "annotator"})  # fmt: skip
    assert r.status_code == 201, r.text
    user = r.json()
    assert owner.post(f"/api/v1/workspaces/{workspace}/users", json={"user_id": user["id"]}).status_code == 201
    return httpx2.Client(base_url=url, headers={"X-Argilla-Api-Key": user["api_key"]}, timeout=60)


def respond(
    client: httpx2.Client, record: str, label: str, status: str = "submitted", reason: str | None = None
) -> None:
    values: dict[str, Any] = {"label": {"value": label}}
    if reason:
        values["correction_reason"] = {"value": reason}
    r = client.post(f"/api/v1/records/{record}/responses", json={"values": values, "status": status})
    assert r.status_code == 201, r.text


def test_push_respond_pull_export_against_argilla_server(venv_python: Path, server: str, tmp_path: Path) -> None:
    run_dir, truth = make_run(tmp_path)
    store = RunStore.open(run_dir)
    queue = {e.item_id: e for e in store.queue()}
    gold_of = store.gold_labels()
    store.close()
    out = review(
        venv_python, server, "push", str(run_dir), "--tool", "argilla", "--overlap", "2", "--gold-share", "0.1"
    )
    assert "created project 'news review r1'" in out, out
    owner = httpx2.Client(base_url=server, headers={"X-Argilla-Api-Key": OWNER_KEY}, timeout=60)
    ds = owner.get("/api/v1/me/datasets").json()["items"][0]
    assert ds["distribution"] == {"strategy": "overlap", "min_submitted": 2}
    assert owner.get(f"/api/v1/me/datasets/{ds['id']}/metadata-properties").json()["items"] == []
    records = owner.get(f"/api/v1/datasets/{ds['id']}/records", params={"limit": 1000}).json()["items"]
    by_item = {r["external_id"]: r["id"] for r in records}
    gold_pushed = set(by_item) - set(queue)
    assert set(queue) <= set(by_item) and len(gold_pushed) == 2
    assert all(set(r["fields"]) == {"text"} and not r.get("metadata") for r in records)
    assert "0 new tasks" in review(venv_python, server, "push", str(run_dir), "--tool", "argilla", "--overlap", "2")

    ann = add_annotator(server, owner, "ann", ds["workspace_id"])
    bob = add_annotator(server, owner, "bob", ds["workspace_id"])
    users = {u["username"]: u["id"] for u in owner.get("/api/v1/users").json()["items"]}
    qids = sorted(queue)
    drafted, discarded, settled = qids[0], qids[1], qids[2]
    for item, record in sorted(by_item.items()):
        t = truth[item]
        reason = "model error" if item in queue and queue[item].llm_label != t else None
        respond(ann, record, t, reason=reason)
        if item == drafted:
            respond(bob, record, wrong(t), status="draft")  # a draft is no answer
        elif item == discarded:
            respond(bob, record, wrong(t), status="discarded")
        else:
            respond(bob, record, wrong(t) if item in (settled, min(gold_pushed)) else t)
    respond(owner, by_item[settled], truth[settled])  # the owner settles the item bob got wrong
    out = review(venv_python, server, "pull", str(run_dir), "--tool", "argilla", "--adjudicator", "argilla")
    n_reviews = 2 * len(queue) - 2 + 1  # bob: no draft, no discarded; the owner's adjudication
    assert f"{n_reviews} added, 0 changed, 0 unchanged, 0 removed" in out, out
    assert "4 on gold items; 1 adjudicated" in out, out
    bob_line = next(line for line in out.splitlines() if f"reviewer {users['bob']} (bob)" in line)
    assert "gold accuracy 50.0% of 2" in bob_line and "FLAGGED" in bob_line, out

    rows = export_rows(run_dir, tmp_path / "final.csv")
    for item in qids:
        want = {users["ann"]: truth[item]}
        if item not in (drafted, discarded):
            want[users["bob"]] = wrong(truth[item]) if item == settled else truth[item]
        if gold_of.get(item):
            want["gold"] = gold_of[item]
        if item == settled:
            want["adjudicated"] = truth[item]
        assert rows[item]["human_labels"] == want, (item, rows[item]["human_labels"], want)
        assert rows[item]["label"] == truth[item]
        want_reason = {"model error"} if queue[item].llm_label != truth[item] else set()
        assert set(rows[item]["correction_reasons"]) == want_reason
    store = RunStore.open(run_dir)
    meta = json.loads(store.get_meta("argilla_sync") or "{}")
    store.close()
    assert OWNER_KEY not in json.dumps(meta)
    print(
        f"argilla: pushed {len(by_item)} records, {n_reviews} reviews pulled, {len(qids)} rows checked", file=sys.stderr
    )
