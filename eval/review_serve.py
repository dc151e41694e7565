"""`labeler review serve`, measured: the page's own overhead per item by keyboard, and the server's memory.

1. Overhead per item: a run of the bundled corpus (data/bbc_news, 300 items; an LLM simulated from the
   corpus's human labels: right 85% of the time, seeded) is routed (low confidence + random audit, 60 items
   at most) and served as a real uvicorn server (`labeler review serve --reviewers alice,bob --gold-share
   0.1`); two reviewers in headless Chromium (Playwright, Debian's chromium) clear the queue by keyboard
   alone, answering each item with its human label (Enter where the shown suggestion is right, else the
   label's number). Timed from the key press to the next item's page loaded: the POST, the store's
   transaction, the redirect, the next item's query and the render. No human thinking time.
2. Memory: the server's resident set (VmRSS) with 10^2 and with 10^5 queued items (a synthetic run store),
   after start and after 200 answers by plain HTTP requests, and the server-side time of one page.

    python eval/review_serve.py [--items 100000] [--answers 200]
"""

from __future__ import annotations

import argparse
import csv
import html
import http.cookiejar
import os
import random
import re
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_review_serve_browser import ARGS, Server, current_item, ensure_chromium  # noqa: E402

from labeler.config import load_config  # noqa: E402
from labeler.inputs import Row  # noqa: E402
from labeler.review.router import route_run  # noqa: E402
from labeler.store import RunStore  # noqa: E402
from labeler.store.rows import QueueEntry  # noqa: E402
from labeler.types import Item, ItemResult  # noqa: E402

TASK = ROOT / "tasks" / "news_topic.toml"


def _manifest(run_id: str) -> dict[str, object]:
    task = load_config(TASK, env={})
    return {
        "run_id": run_id,
        "labels": list(task.label_names),
        "members": [{"name": "default", "template_hash": "x", "endpoint": {"model": "simulated"}}],
        "config_path": str(TASK),
        "config": dict(task.raw),
    }


def bundled_run(root: Path, *, accuracy: float = 0.85, seed: int = 0) -> tuple[Path, dict[str, str]]:
    """The bundled corpus with a simulated LLM (right with probability `accuracy`), routed."""
    rows = list(csv.DictReader((ROOT / "data" / "bbc_news" / "items.csv").open(encoding="utf-8")))
    labels = sorted({r["label"] for r in rows})
    rng = random.Random(seed)
    run_dir = root / "bundled"
    store = RunStore.create(run_dir, _manifest("bundled"))
    store.ingest(
        [Row(Item(r["id"], r["text"], k + 1), gold=r["label"]) for k, r in enumerate(rows)], members=["default"]
    )
    for r in rows:
        if rng.random() < accuracy:
            label, conf = r["label"], rng.uniform(0.5, 0.99)
        else:
            label, conf = rng.choice([x for x in labels if x != r["label"]]), rng.uniform(0.3, 0.8)
        store.put_result(ItemResult(r["id"], "default", "labeled", label=label, confidence=conf))
    store.close()
    route_run(run_dir, max_items=60)
    return run_dir, {r["id"]: r["label"] for r in rows}


def synthetic_run(root: Path, n: int) -> Path:
    """`n` items, all queued (as `labeler route` would write them), texts of ~200 characters."""
    run_dir = root / f"synthetic-{n}"
    store = RunStore.create(run_dir, _manifest(f"synthetic-{n}"))
    words = [
        "the",
        "markets",
        "rallied",
        "as",
        "the",
        "team",
        "won",
        "while",
        "the",
        "minister",
        "spoke",
        "about",
        "new",
        "gadgets",
    ]
    rng = random.Random(n)
    store.ingest(
        (Row(Item(f"s{k:06d}", " ".join(rng.choices(words, k=35)), k + 1)) for k in range(n)), members=["default"]
    )
    entries = [
        QueueEntry(f"s{k:06d}", k + 1, ("low_confidence",), 1.0 - k / n, False, "business", 0.4) for k in range(n)
    ]
    store.write_queue(entries, [], seed=0)
    store.close()
    return run_dir


NAV = "(() => { const n = performance.getEntriesByType('navigation')[0]; return [n.responseEnd, n.loadEventEnd]; })()"


def keyboard_overhead(run_dir: Path, truth: dict[str, str]) -> tuple[list[float], list[float], list[float]]:
    """Seconds from each key press to the next item loaded, two reviewers clearing the queue in turns; and,
    from the browser's navigation timing, the seconds from the POST's start to the next page's last byte
    (the server's part: answer, redirect, next item) and to its load event."""
    from playwright.sync_api import sync_playwright

    path = ensure_chromium()
    if path is None:
        raise SystemExit("chromium is missing and `apt-get install -y chromium` failed")
    store = RunStore.open(run_dir)
    labels = list(store.task().label_names)
    store.close()
    server = Server(run_dir, "--reviewers", "alice,bob", "--gold-share", "0.1")
    times: list[float] = []
    served: list[float] = []
    loaded: list[float] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=path, args=ARGS)
            pages = []
            for who in ("alice", "bob"):
                page = browser.new_context().new_page()
                page.goto(server.links[who])
                pages.append(page)
            while True:
                moved = False
                for page in pages:
                    page.reload()  # the other reviewer may have taken this item meanwhile
                    item = current_item(page)
                    if item is None:
                        continue
                    moved = True
                    shown = page.query_selector("#suggestion")
                    right = shown is not None and shown.inner_text() == truth[item]
                    key = "Enter" if right else str(labels.index(truth[item]) + 1)
                    t0 = time.perf_counter()
                    with page.expect_navigation(wait_until="load"):
                        page.keyboard.press(key)
                    times.append(time.perf_counter() - t0)
                    response_end, load_end = page.evaluate(NAV)
                    served.append(response_end / 1000)
                    loaded.append(load_end / 1000)
                if not moved:
                    break
            browser.close()
    finally:
        server.stop()
    return times, served, loaded


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def memory(run_dir: Path, answers: int) -> tuple[int, int, float]:
    """(RSS after start, RSS after `answers` answers, median seconds of one GET /) for one server."""
    server = Server(run_dir)
    try:
        start = rss_kib(server.proc.pid)
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        link = next(v for k, v in server.links.items() if k != "lead")
        base = link.split("/login")[0]
        page = opener.open(link).read().decode()
        gets = []
        for _ in range(answers):
            form = re.search(r'<form method="post" action="/answer" id="answer">.*?</form>', page, re.S)
            assert form, "no item on the page"
            values = dict(re.findall(r'name="(csrf|nonce|item_id)" value="([^"]*)"', form.group(0)))
            data = {k: html.unescape(v) for k, v in values.items()} | {"label": "business"}
            req = urllib.request.Request(
                f"{base}/answer", data=urllib.parse.urlencode(data).encode(), headers={"Origin": base}
            )
            opener.open(req).read()  # follows the 303 to the next item
            t0 = time.perf_counter()
            page = opener.open(f"{base}/").read().decode()
            gets.append(time.perf_counter() - t0)
        return start, rss_kib(server.proc.pid), statistics.median(gets)
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000, help="queued items of the large synthetic run")
    ap.add_argument("--answers", type=int, default=200, help="answers given before memory is read again")
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="review-serve-"))
    run_dir, truth = bundled_run(root)
    times, served, loaded = keyboard_overhead(run_dir, truth)
    print(
        f"keyboard, bundled corpus: {len(times)} items by 2 reviewers; page overhead per item (key press to the "
        f"next item loaded) mean {statistics.mean(times):.3f} s, median {statistics.median(times):.3f} s, "
        f"p90 {sorted(times)[int(0.9 * len(times))]:.3f} s, max {max(times):.3f} s"
    )
    print(
        f"  of which, by the browser's navigation timing (medians): answer + redirect + next item served "
        f"{statistics.median(served):.3f} s, page loaded {statistics.median(loaded):.3f} s after the POST began; "
        f"load average during the run {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    for n in (100, a.items):
        run = synthetic_run(root, n)
        answers = min(a.answers, n // 2)
        start, after, get = memory(run, answers)
        print(
            f"server with {n:,} queued items: RSS {start / 1024:.1f} MiB after start, {after / 1024:.1f} MiB "
            f"after {answers} answers; one page (GET /) {get * 1000:.1f} ms (median)"
        )


if __name__ == "__main__":
    main()
