"""Shared by the live review tests (labeler review push / pull against real Label Studio and argilla-server):
a small routed run (known truth, known LLM errors, gold labels on every third item), the aggregation runs
(one LLM member plus reviewers of designed quality, single- and multi-label), `labeler` CLI calls that
include push/pull even before the lead wires labeler.cli.review_live into `labeler review`, and the Label
Studio set-up every live Label Studio test repeats (users and their tokens, the pushed project's tasks)."""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import test_review


def make_run(root: Path, *, n: int = 60, gold_every: int = 3) -> tuple[Path, dict[str, str]]:
    """test_review's run, smaller, with the truth in the gold column of every third item."""
    return test_review.make_run(root, n=n, gold_every=gold_every)


def parser() -> argparse.ArgumentParser:
    """`labeler`'s parser, with review push/pull added if the CLI does not have them yet."""
    from labeler.cli import build_parser
    from labeler.cli.review_live import register

    p = build_parser()
    top = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    review = top.choices["review"]
    sub = next(a for a in review._actions if isinstance(a, argparse._SubParsersAction))
    if "push" not in sub.choices:
        register(sub)
    return p


def labeler(*argv: str) -> tuple[int, str]:
    """Run `labeler ARGV` in-process (as labeler.cli.main does); returns (exit code, stdout + stderr)."""
    from labeler.errors import LabelerError

    out = io.StringIO()
    args = parser().parse_args(list(argv))
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = int(args.fn(args))
        except LabelerError as exc:
            print(f"labeler: error: {exc}")
            code = 2
    return code, out.getvalue()


def export_rows(run_dir: Path, out: Path) -> dict[str, dict[str, Any]]:
    """`labeler export RUN_DIR --out out.csv`, read back: id -> row (JSON columns decoded)."""
    code, text = labeler("export", str(run_dir), "--out", str(out))
    assert code == 0, text
    with out.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r["human_labels"] = json.loads(r["human_labels"])
        r["correction_reasons"] = json.loads(r["correction_reasons"])
    return {r["id"]: r for r in rows}


def ls_login(url: str, email: str, password: str) -> str:
    """Log in to Label Studio as a browser would and make a personal access token (a JWT refresh token):
    1.23 has legacy tokens off, so POST /api/token/ with the session is the way."""
    import httpx2

    with httpx2.Client(base_url=url, timeout=60, follow_redirects=True) as c:
        c.get("/user/login/")
        r = c.post(
            "/user/login/",
            data={"email": email, "password": password, "csrfmiddlewaretoken": c.cookies["csrftoken"]},
            headers={"Referer": f"{url}/user/login/"},
        )
        r.raise_for_status()
        if "sessionid" not in c.cookies:
            raise AssertionError(f"login as {email} failed: {r.text[:300]}")
        r = c.post("/api/token/", json={}, headers={"X-CSRFToken": c.cookies["csrftoken"], "Referer": url})
        r.raise_for_status()
        return str(r.json()["token"])


def ls_tasks(client: Any, title: str) -> tuple[dict[str, Any], dict[str, int]]:
    """The Label Studio project `title` that `labeler review push` made, and its tasks: item id -> task id."""
    project = client.get("/api/projects", params={"title": title}).json()["results"][0]
    body = client.get("/api/tasks", params={"project": project["id"], "page_size": 1000, "fields": "all"}).json()
    return project, {t["data"]["item_id"]: int(t["id"]) for t in body["tasks"]}


@dataclass(frozen=True)
class LsUsers:
    url: str
    admin_token: str
    tokens: dict[str, str]  # reviewer name -> refresh token
    ids: dict[str, str]  # reviewer name -> Label Studio user id

    def clients(self) -> dict[str, Any]:
        """An httpx2 client per reviewer with a fresh access token (they live 5 minutes)."""
        from test_review_live_labelstudio import api

        return {r: api(self.url, t) for r, t in self.tokens.items()}

    def admin(self) -> Any:
        from test_review_live_labelstudio import api

        return api(self.url, self.admin_token)


def ls_users(server: Any, names: tuple[str, ...] = (), password: str = "reviewer-secret-1") -> LsUsers:
    """The admin's token and a user `<name>@example.com` with its token per name. Call once per server and
    user (Label Studio makes one personal token per user: a second POST /api/token/ is a 409), from a
    module-scoped fixture."""
    from test_review_live_labelstudio import ADMIN, ADMIN_PW, add_user, api

    admin_token = ls_login(server.url, ADMIN, ADMIN_PW)
    tokens = {}
    for r in names:
        add_user(server, f"{r}@example.com", password)
        tokens[r] = ls_login(server.url, f"{r}@example.com", password)
    listed = {u["email"]: str(u["id"]) for u in api(server.url, admin_token).get("/api/users/").json()}
    return LsUsers(server.url, admin_token, tokens, {r: listed[f"{r}@example.com"] for r in tokens})


# --- aggregation runs: one LLM member and reviewers of designed quality (tests/test_aggregate_live*.py) ------
LABELS = ("business", "sport", "tech")
N = 120
LLM_ACC = 0.8
# reviewer -> share of its answers that are right (None: always answers `business`); the constant one first
REVIEWERS: dict[str, float | None] = {"constant": None, "careful": 0.95, "noisy": 0.7}


def _wrong(label: str, rng: np.random.Generator) -> str:
    return str(rng.choice([x for x in LABELS if x != label]))


def make_llm_run(root: Path, *, run_id: str = "agg1") -> tuple[Path, dict[str, str]]:
    """`N` items of known truth, one LLM member right `LLM_ACC` of the time at confidence 0.8, routed with
    a threshold above every confidence: every item is queued (no gold column: the consensus alone judges)."""
    from fakes import write_task

    from labeler.config import load_config
    from labeler.inputs import Row
    from labeler.review.router import route_run
    from labeler.store import RunStore
    from labeler.types import Item, ItemResult

    rng = np.random.default_rng(7)
    cfg = write_task(
        root / "task",
        labels=LABELS,
        sections={"routing": {"low_confidence": 0.95, "audit_fraction": 0.0}, "aggregate": {"min_accuracy": 0.6}},
    )
    task = load_config(cfg, env={})
    manifest = {
        "run_id": run_id,
        "labels": list(LABELS),
        "members": [{"name": "default", "template_hash": "x", "endpoint": {"model": "test-model"}}],
        "config_path": str(cfg),
        "config": dict(task.raw),
    }
    run_dir = root / "run"
    store = RunStore.create(run_dir, manifest)
    truth = {f"i{k:03d}": LABELS[k % 3] for k in range(N)}
    store.ingest([Row(Item(i, f"text {i}", k + 1)) for k, i in enumerate(truth)], members=["default"])
    for i, t in truth.items():
        lab = t if rng.random() < LLM_ACC else _wrong(t, rng)
        store.put_result(ItemResult(i, "default", "labeled", label=lab, confidence=0.8))
    store.close()
    route_run(run_dir)
    return run_dir, truth


def answers(truth: dict[str, str]) -> dict[str, dict[str, str]]:
    """reviewer -> item -> its answer, drawn once from the designed qualities (seeded)."""
    rng = np.random.default_rng(11)
    out: dict[str, dict[str, str]] = {}
    for r, acc in REVIEWERS.items():
        out[r] = {
            i: "business" if acc is None else (t if rng.random() < acc else _wrong(t, rng)) for i, t in truth.items()
        }
    return out


def accuracy(path: Path, truth: dict[str, Any]) -> float:
    """Share of an exported JSONL's final labels equal to the truth (a list label compares as a tuple)."""
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    assert {r["id"] for r in rows} == set(truth)
    return float(
        np.mean([(tuple(r["label"]) if isinstance(r["label"], list) else r["label"]) == truth[r["id"]] for r in rows])
    )


def export_accuracy(run_dir: Path, out_dir: Path, truth: dict[str, Any]) -> dict[str, float]:
    """`labeler export --consensus vote|dawid_skene` and the plain human rule, each against the truth."""
    got = {}
    for method in ("vote", "dawid_skene", None):
        path = out_dir / f"{method or 'plain'}.jsonl"
        code, out = labeler("export", str(run_dir), "--out", str(path), *(("--consensus", method) if method else ()))
        assert code == 0, out
        got[method or "human rule"] = accuracy(path, truth)
    return got


TOPICS = ("economy", "sport", "tech", "health")
M = 60


def make_multi_run(
    root: Path, *, run_id: str = "aggm", one_draw: bool = False
) -> tuple[Path, dict[str, tuple[str, ...]]]:
    """`M` multi-label items; the LLM drops or adds one topic on every 4th item; every item queued. The true
    topics: with `one_draw`, one or two per item, drawn once (Argilla takes no empty answer); without, the
    draw is repeated for each topic, as the Label Studio test's recorded figures had it: 0 to 4 topics, none
    on 14 of the 60 items."""
    from fakes import write_task

    from labeler.config import load_config
    from labeler.inputs import Row
    from labeler.store import RunStore
    from labeler.store.rows import QueueEntry
    from labeler.tasktypes.registry import for_task
    from labeler.types import Item, ItemResult

    rng = np.random.default_rng(5)
    cfg = write_task(root / "task", labels=TOPICS, task={"type": "multi_label"})
    task = load_config(cfg, env={})
    kind = for_task(task)
    manifest = {
        "run_id": run_id,
        "labels": list(TOPICS),
        "members": [{"name": "default", "template_hash": "x", "endpoint": {"model": "test-model"}}],
        "config_path": str(cfg),
        "config": dict(task.raw),
    }
    run_dir = root / "run"
    store = RunStore.create(run_dir, manifest)
    truth = {}
    for k in range(M):
        n = 1 + int(rng.random() < 0.4)
        if one_draw:
            drawn = set(rng.choice(TOPICS, size=n, replace=False))
            truth[f"m{k:02d}"] = tuple(t for t in TOPICS if t in drawn)
        else:
            truth[f"m{k:02d}"] = tuple(t for t in TOPICS if t in set(rng.choice(TOPICS, size=n, replace=False)))
    store.ingest([Row(Item(i, f"text {i}", k + 1)) for k, i in enumerate(truth)], members=["default"])
    entries = []
    for k, (i, t) in enumerate(truth.items()):
        llm = set(t)
        if k % 4 == 0:
            flip = str(rng.choice(TOPICS))
            llm = llm ^ {flip} or set(t)
        value = kind.encode(tuple(x for x in TOPICS if x in llm))
        store.put_result(ItemResult(i, "default", "labeled", label=value, confidence=0.5))
        entries.append(
            QueueEntry(i, k + 1, ("low_confidence",), 0.5, False, value, 0.5, member_labels={"default": value})
        )
    store.flush()
    store.write_queue(entries, [], seed=0)
    store.close()
    return run_dir, truth


def multi_answers(truth: dict[str, tuple[str, ...]]) -> dict[str, dict[str, tuple[str, ...]]]:
    """careful: the true set, one topic added on 5% of items; noisy: adds each absent topic 40% of the time;
    constant: every topic, always (in that order: constant, careful, noisy)."""
    rng = np.random.default_rng(13)
    out: dict[str, dict[str, tuple[str, ...]]] = {"constant": {}, "careful": {}, "noisy": {}}
    for i, t in truth.items():
        extra = {str(rng.choice(TOPICS))} if rng.random() < 0.05 else set()
        out["careful"][i] = tuple(x for x in TOPICS if x in set(t) | extra)
        out["noisy"][i] = tuple(x for x in TOPICS if x in t or rng.random() < 0.4)
        out["constant"][i] = TOPICS
    return out
