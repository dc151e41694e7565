"""A small routed run for the live review tests (labeler review push / pull): known truth, known LLM errors,
gold labels on every third item, and `labeler` CLI calls that include push/pull even before the lead wires
labeler.cli.review_live into `labeler review`."""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
from pathlib import Path
from typing import Any

from fakes import write_task

from labeler.config import load_config
from labeler.inputs import Row
from labeler.review.router import route_run
from labeler.store import RunStore
from labeler.types import Item, ItemResult

LABELS = ("business", "sport", "tech")
REASONS = ("guideline gap", "ambiguous", "model error", "other")


def truth_of(k: int) -> str:
    return LABELS[k % 3]


def wrong(label: str) -> str:
    return LABELS[(LABELS.index(label) + 1) % 3]


def make_run(root: Path, *, n: int = 60, gold_every: int = 3) -> tuple[Path, dict[str, str]]:
    """`n` items; the LLM is wrong (confidence 0.3) on every 6th item and right on the rest; items with
    k % gold_every == 2 carry their truth in the gold column. Routed (low confidence + 10% audit)."""
    (root / "task").mkdir(parents=True)
    cfg = write_task(
        root / "task",
        labels=LABELS,
        sections={"routing": {"low_confidence": 0.6, "audit_fraction": 0.1, "seed": 4}},
    )
    task = load_config(cfg, env={})
    run_dir = root / "run"
    manifest = {
        "run_id": "r1",
        "labels": list(LABELS),
        "members": [{"name": "default", "template_hash": "x", "endpoint": {"model": "test-model"}}],
        "config_path": str(cfg),
        "config": dict(task.raw),
    }
    store = RunStore.create(run_dir, manifest)
    truth = {f"i{k:02d}": truth_of(k) for k in range(n)}
    rows = [
        Row(Item(i, f"text {i} about {t}", k + 1), gold=t if k % gold_every == 2 else None)
        for k, (i, t) in enumerate(truth.items())
    ]
    store.ingest(rows, members=["default"])
    for k, (i, t) in enumerate(truth.items()):
        if k % 6 == 0:
            store.put_result(ItemResult(i, "default", "labeled", label=wrong(t), confidence=0.3))
        else:
            store.put_result(ItemResult(i, "default", "labeled", label=t, confidence=0.7 + (k % 30) / 100))
    store.close()
    route_run(run_dir)
    return run_dir, truth


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
