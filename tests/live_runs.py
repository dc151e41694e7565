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
