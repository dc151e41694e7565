"""The live round trip against a REAL Label Studio 1.23 server on 127.0.0.1 (SQLite, its own venv made by
.ci/labelstudio.sh): `labeler review push` creates the project, two users annotate with overlap (one
answers a task twice, skips one, deletes one; a ground-truth annotation adjudicates), `labeler review pull`
brings it back twice (the second time: a change and a deletion), and `labeler export` is checked on
every label, correction reason and reviewer.

Run: `python -m pytest -m labelstudio tests/test_review_live_labelstudio.py` (the first run installs Label
Studio, about 4 minutes; later runs reuse ~/.cache/labeler/ls-venv)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from live_runs import export_rows, labeler, ls_login, make_run
from test_review import wrong

from labeler.store import RunStore

pytestmark = pytest.mark.labelstudio

ROOT = Path(__file__).resolve().parents[1]
ADMIN, ADMIN_PW = "alice@example.com", "alice-secret-1"
BOB, BOB_PW = "bob@example.com", "bob-secret-1"


@dataclass(frozen=True)
class Server:
    url: str
    python: Path  # the Label Studio venv's interpreter
    env: dict[str, str]  # what the server was started with (data dir, ...)
    timings: dict[str, float]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    t0 = time.monotonic()
    got = subprocess.run(["bash", str(ROOT / ".ci" / "labelstudio.sh")], capture_output=True, text=True, timeout=1800)
    assert got.returncode == 0, f"installing Label Studio failed:\n{got.stderr[-3000:]}"
    exe = Path(got.stdout.strip().splitlines()[-1])
    installed = time.monotonic()
    data = tmp_path_factory.mktemp("ls-data")
    port = _free_port()
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data),
        "LABEL_STUDIO_USERNAME": ADMIN,
        "LABEL_STUDIO_PASSWORD": ADMIN_PW,
        "DJANGO_DB": "sqlite",
    }
    log = (data / "server.log").open("w")
    proc = subprocess.Popen(
        [str(exe), "start", "--host", "127.0.0.1", "--port", str(port), "--no-browser"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            if proc.poll() is not None:
                pytest.fail(f"label-studio exited ({proc.returncode}):\n{(data / 'server.log').read_text()[-3000:]}")
            try:
                if httpx2.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"label-studio did not answer in 600 s:\n{(data / 'server.log').read_text()[-3000:]}")
            time.sleep(1)
        timings = {"install_s": installed - t0, "start_s": time.monotonic() - installed}
        yield Server(url, exe.parent / "python", env, timings)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and the workers it started, nothing else
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def add_user(server: Server, email: str, password: str) -> None:
    """A second user, made with Django's manage.py shell inside the installed package (Label Studio's
    API has no way to set a password)."""
    pkg = subprocess.run(
        [str(server.python), "-c", "import label_studio, os; print(os.path.dirname(label_studio.__file__))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    code = (
        "from users.models import User\n"
        "from organizations.models import Organization\n"
        "org = Organization.objects.first()\n"
        f"u = User.objects.create_user(email={email!r}, password={password!r}, username={email.split('@')[0]!r})\n"
        "org.add_user(u); u.active_organization = org; u.save()\n"
    )
    env = {**server.env, "DJANGO_SETTINGS_MODULE": "core.settings.label_studio"}
    got = subprocess.run(
        [str(server.python), "manage.py", "shell", "-c", code], cwd=pkg, env=env, capture_output=True, text=True
    )
    assert got.returncode == 0, got.stderr[-2000:]


def api(url: str, token: str) -> httpx2.Client:
    access = httpx2.post(f"{url}/api/token/refresh", json={"refresh": token}, timeout=60).json()["access"]
    return httpx2.Client(base_url=url, headers={"Authorization": f"Bearer {access}"}, timeout=60)


def result(label: str, reason: str | None = None, note: str | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}
    ]
    if reason:
        out.append(
            {"from_name": "correction_reason", "to_name": "text", "type": "choices", "value": {"choices": [reason]}}
        )
    if note:
        out.append({"from_name": "note", "to_name": "text", "type": "textarea", "value": {"text": [note]}})
    return out


def annotate(client: httpx2.Client, task_id: int, res: list[dict[str, Any]], **extra: Any) -> int:
    r = client.post(f"/api/tasks/{task_id}/annotations/", json={"result": res, **extra})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def test_push_annotate_pull_export_against_real_label_studio(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t_test = time.monotonic()
    run_dir, truth = make_run(tmp_path)
    store = RunStore.open(run_dir)
    queue = {e.item_id: e for e in store.queue()}
    gold_of = store.gold_labels()
    store.close()
    admin_token = ls_login(server.url, ADMIN, ADMIN_PW)
    monkeypatch.setenv("LABEL_STUDIO_URL", server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", admin_token)

    # --- push: project with our config, overlap 2, queue + gold items, data = text + item id only
    code, out = labeler(
        "review", "push", str(run_dir), "--tool", "labelstudio", "--overlap", "2", "--gold-share", "0.1"
    )
    assert code == 0, out
    assert "created project" in out
    alice = api(server.url, admin_token)
    project = alice.get("/api/projects", params={"title": "news review r1"}).json()["results"][0]
    assert project["maximum_annotations"] == 2
    body = alice.get("/api/tasks", params={"project": project["id"], "page_size": 1000, "fields": "all"}).json()
    tasks = {t["data"]["item_id"]: t for t in body["tasks"]}
    gold_pushed = set(tasks) - set(queue)
    assert set(queue) <= set(tasks) and len(gold_pushed) == round(0.1 * len(queue) / 0.9)
    assert all(set(t["data"]) == {"text", "item_id"} for t in tasks.values())
    assert all(gold_of.get(i) for i in gold_pushed)
    preds = alice.get("/api/predictions/", params={"project": project["id"]}).json()
    assert len(preds) == len(tasks)  # one per task, gold items too: nothing tells them apart
    assert {p["model_version"] for p in preds} == {"labeler/r1/test-model"}
    code, out = labeler("review", "push", str(run_dir), "--tool", "labelstudio", "--overlap", "2")
    assert code == 0 and "0 new tasks" in out, out

    # --- two users annotate with overlap
    add_user(server, BOB, BOB_PW)
    bob = api(server.url, ls_login(server.url, BOB, BOB_PW))
    users = {u["email"]: str(u["id"]) for u in alice.get("/api/users/").json()}
    a_id, b_id = users[ADMIN], users[BOB]
    qids = sorted(queue)
    gold_in_queue = [i for i in qids if gold_of.get(i)]
    outvoted = gold_in_queue[0]  # bob wrong: alice and the gold column outvote him
    adjudicated = next(i for i in qids if i != outvoted and queue[i].llm_label != truth[i])
    rest = [i for i in qids if i not in (outvoted, adjudicated)]
    twice = rest[-1]  # alice answers twice: the latest counts
    skipped = rest[-2]  # bob skips it: not an answer
    deleted = rest[-3]  # bob's answer deleted after the first pull
    changed = rest[-4]  # alice changes her answer after the first pull (another reason)
    bob_gold_wrong = sorted(gold_pushed)[0]
    expected_reasons: dict[str, set[str]] = {i: set() for i in qids}
    alice_ann: dict[str, int] = {}
    bob_ann: dict[str, int] = {}
    for item, task in sorted(tasks.items()):
        t = truth[item]
        reason = "model error" if item in queue and queue[item].llm_label != t else None
        if item == twice:
            annotate(alice, task["id"], result(wrong(t)))
        alice_ann[item] = annotate(alice, task["id"], result(t, reason, "checked" if reason else None))
        if reason:
            expected_reasons[item].add(reason)
        if item == skipped:
            annotate(bob, task["id"], [], was_cancelled=True)
            continue
        b_label = wrong(t) if item in (outvoted, adjudicated, bob_gold_wrong) else t
        b_reason = "ambiguous" if item == outvoted else None
        bob_ann[item] = annotate(bob, task["id"], result(b_label, b_reason))
        if b_reason:
            expected_reasons[item].add(b_reason)
    r = alice.patch(f"/api/annotations/{alice_ann[adjudicated]}/", json={"ground_truth": True})
    assert r.status_code == 200, r.text

    # --- pull
    code, out = labeler("review", "pull", str(run_dir), "--tool", "labelstudio")
    assert code == 0, out
    n_ann = 2 * len(tasks) + 1 - 1  # both on every task, alice twice on one, bob skipped one
    assert f"pulled {n_ann} submitted answers" in out, out
    n_reviews = 2 * len(queue) - 1  # bob skipped one
    assert f"{n_reviews} added, 0 changed, 0 unchanged, 0 removed" in out, out
    assert "1 earlier answers of a reviewer to the same item dropped" in out, out
    assert f"{2 * len(gold_pushed)} on gold items; 1 adjudicated" in out, out
    assert f"reviewers: {a_id} ({ADMIN}), {b_id} ({BOB})" in out, out
    bob_line = next(line for line in out.splitlines() if f"reviewer {b_id} " in line)
    alice_line = next(line for line in out.splitlines() if f"reviewer {a_id} " in line)
    g = len(gold_pushed)
    assert f"gold accuracy {(g - 1) / g:.1%} of {g}" in bob_line and "FLAGGED" in bob_line, out
    assert f"gold accuracy 100.0% of {g}" in alice_line and "FLAGGED" not in alice_line, out

    # --- the tool changes: bob's answer deleted, alice's changed; pull again
    assert bob.delete(f"/api/annotations/{bob_ann[deleted]}/").status_code == 204
    r = alice.patch(f"/api/annotations/{alice_ann[changed]}/", json={"result": result(truth[changed], "other")})
    assert r.status_code == 200, r.text
    expected_reasons[changed] = {"other"}
    # issue 23 (8): the same server by another spelling (localhost for 127.0.0.1, a trailing slash) is the
    # same project, gold items and all
    monkeypatch.setenv("LABEL_STUDIO_URL", server.url.replace("127.0.0.1", "localhost") + "/")
    code, out = labeler("review", "pull", str(run_dir), "--tool", "labelstudio")
    assert code == 0, out
    assert f"0 added, 1 changed, {n_reviews - 2} unchanged, 1 removed" in out, out
    assert f"gold accuracy {(g - 1) / g:.1%} of {g}" in out, out

    # issue 23 (5): the real JSON export names its project; another project's export is refused naming both
    export = alice.get(f"/api/projects/{project['id']}/export", params={"exportType": "JSON"}).json()
    assert {t.get("project") for t in export} == {project["id"]}, export[0].keys()
    other = project["id"] + 3
    for t in export:
        t["project"] = other
        for ann in t.get("annotations") or []:
            ann["project"] = other
    (tmp_path / "other.json").write_text(json.dumps(export), encoding="utf-8")
    code, out = labeler("review", "import", str(run_dir), str(tmp_path / "other.json"))
    base = server.url.rstrip("/")
    assert code == 2 and (
        f"this run is reviewed through labelstudio project {project['id']} at {base}; the file is project {other} "
        "— pass --other-project to import it anyway"
    ) in out, out

    # --- the final dataset: every label, reason and reviewer
    rows = export_rows(run_dir, tmp_path / "final.csv")
    checked = 0
    for item in qids:
        row = rows[item]
        want: dict[str, str] = {}
        if item != adjudicated:
            want[a_id] = truth[item]
        if item not in (skipped, deleted):
            want[b_id] = wrong(truth[item]) if item in (outvoted, adjudicated) else truth[item]
        if gold_of.get(item):
            want["gold"] = gold_of[item]
        if item == adjudicated:
            want["adjudicated"] = truth[item]
        assert row["human_labels"] == want, (item, row["human_labels"], want)
        assert row["label"] == truth[item], (item, row)
        assert row["source"] == ("adjudicated" if item == adjudicated else "human"), (item, row["source"])
        assert set(row["correction_reasons"]) == expected_reasons[item], (item, row["correction_reasons"])
        if queue[item].llm_label != truth[item] and item not in (adjudicated, changed):
            assert json.loads(row["notes"]).get(a_id) == "checked", (item, row["notes"])  # issue 23 (9)
        checked += 1
    for item in gold_pushed:  # answers on gold items measure reviewers; they are not reviews
        assert rows[item]["human_labels"] == {"gold": gold_of[item]}
    assert checked == len(queue)
    store = RunStore.open(run_dir)
    meta = store.get_meta("labelstudio_sync")
    store.close()
    assert meta is not None and admin_token not in meta and "last_pull" in meta
    timings = {**server.timings, "test_s": time.monotonic() - t_test}
    print("label studio timings: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    print(
        f"pushed {len(tasks)} tasks ({len(queue)} queued + {g} gold), pulled {n_ann} annotations, "
        f"{checked} rows checked"
    )
