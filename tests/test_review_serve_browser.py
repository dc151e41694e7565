"""`labeler review serve` in a real headless browser: Playwright (PyPI) driving Debian's Chromium against a real
uvicorn server on a free 127.0.0.1 port. Two reviewers clear a queue by keyboard alone, undo works, audit
items show no LLM label (and with --blind-audit no item does), an injected <script> stays text (no dialog
fires), and the run store holds every answer exactly once. Takes the README's screenshot
(docs/review-serve.png).

Chromium comes from Debian (`apt-get install -y chromium`, as root): the session fixture installs it when it
is missing; `playwright install` cannot download its own browsers here. Where the install fails the tests
are skipped with one line saying so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_review_serve import LABELS, SCRIPT, make_serve_run, truth_of

from labeler.store import RunStore

pytestmark = pytest.mark.integration
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "review-serve.png"


def ensure_chromium() -> str | None:
    """The path of Debian's chromium, installing it (apt-get, as root) when missing; None if that fails."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "install", "-y", "chromium"],
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "chromium"],
    ):
        subprocess.run(cmd, env=env, capture_output=True, timeout=1200, check=False)
        if Path(CHROMIUM).exists():
            return CHROMIUM
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed once per session when missing; skips the browser tests if it cannot be."""
    pytest.importorskip("playwright.sync_api", reason="browser tests skipped: pip install playwright")
    path = ensure_chromium()
    if path is None:
        pytest.skip("browser tests skipped: chromium is missing and `apt-get install -y chromium` failed")
    return path


@pytest.fixture
def browser(chromium: str) -> Iterator[Any]:
    """A headless Chromium for one test. Per test, not per session: Playwright's sync API keeps an event loop
    running while it is open, which would stop the suite's asyncio tests from starting theirs."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=ARGS)
        yield b
        b.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`labeler review serve RUN_DIR ...` as a real process; `links` maps reviewer (and "lead") to its link."""

    def __init__(self, run_dir: Path, *args: str) -> None:
        self.port = free_port()
        cmd = [sys.executable, "-m", "labeler.cli", "review", "serve", str(run_dir), "--port", str(self.port), *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.links: dict[str, str] = {}
        assert self.proc.stdout is not None
        lines = []
        while not lines or not lines[-1].startswith("answers are saved"):
            line = self.proc.stdout.readline()
            assert line, "the server ended early:\n" + "".join(lines)
            lines.append(line)
            if m := re.match(r"\s+(\S+): (http://\S+)", line):
                self.links[m.group(1)] = m.group(2)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start listening"
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


def current_item(page: Any) -> str | None:
    el = page.query_selector("#item")
    return None if el is None else el.get_attribute("data-item-id")


def press(page: Any, key: str) -> None:
    """Press one key and wait for the next page to load (every action posts and redirects)."""
    with page.expect_navigation():
        page.keyboard.press(key)


def key_for(label: str) -> str:
    return str(LABELS.index(label) + 1)


def stored(run_dir: Path) -> tuple[list[tuple[str, str, str, str]], int]:
    """(item, reviewer, label, source) of every review, and how many answers the page logged as standing."""
    store = RunStore.open(run_dir)
    try:
        rows = [(r.item_id, r.reviewer, r.label, r.source) for revs in store.reviews().values() for r in revs]
        counts = store.conn.execute("SELECT COUNT(*) FROM serve_log WHERE undone = 0 AND action = 'answer'")
        return rows, int(counts.fetchone()[0])
    finally:
        store.close()


def test_two_reviewers_clear_the_queue_by_keyboard(browser: Any, tmp_path: Path) -> None:
    run_dir = make_serve_run(tmp_path, n=36)
    store = RunStore.open(run_dir)
    queue = {e.item_id: e for e in store.queue()}
    store.close()
    server = Server(run_dir, "--reviewers", "alice,bob")
    dialogs: list[str] = []
    try:
        pages = {}
        for who in ("alice", "bob"):
            ctx = browser.new_context(viewport={"width": 1100, "height": 520})
            page = ctx.new_page()
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(server.links[who])
            pages[who] = page
        alice = pages["alice"]
        assert current_item(alice) == "i00"  # rank 1, the injected script
        assert alice.inner_text("#text") == SCRIPT  # it stays text
        assert alice.evaluate("document.querySelectorAll('script').length") == 1
        press(alice, "3")  # a wrong answer...
        assert ("i00", "alice") in {(i, r) for i, r, _, _ in stored(run_dir)[0]}
        press(alice, "u")  # ...taken back: the item comes back and the review is gone
        assert current_item(alice) == "i00" and "taken back" in alice.inner_text("#flash")
        assert stored(run_dir)[0] == []
        answered: dict[str, list[str]] = {"alice": [], "bob": []}
        screenshot_taken = False
        while True:
            moved = False
            for who, page in pages.items():
                page.reload()
                item = current_item(page)
                if item is None:
                    continue
                moved = True
                entry = queue[item]
                truth = truth_of(int(item[1:]))
                suggestion = page.query_selector("#suggestion")
                if entry.audit:
                    assert suggestion is None and "(suggestion hidden)" in page.inner_text("#llm")
                else:
                    assert suggestion is not None and suggestion.inner_text() == entry.llm_label
                if who == "alice" and not screenshot_taken and suggestion is not None and answered["alice"]:
                    SCREENSHOT.parent.mkdir(exist_ok=True)
                    page.screenshot(path=str(SCREENSHOT))
                    screenshot_taken = True
                if who == "bob" and not answered["bob"]:
                    page.keyboard.press("n")  # a note, typed on the keyboard too
                    page.keyboard.type("checked <b>twice</b>")
                    page.keyboard.press("Escape")
                if suggestion is not None and entry.llm_label == truth:
                    press(page, "Enter")  # accept
                else:
                    press(page, key_for(truth))  # change
                answered[who].append(item)
            if not moved:
                break
        assert "Nothing left for you to review" in alice.inner_text("main")
        assert alice.query_selector("#report-link") is not None
        assert dialogs == []
        assert screenshot_taken and SCREENSHOT.stat().st_size > 10_000
        reviews, logged = stored(run_dir)
        keys = [(i, r) for i, r, _, _ in reviews]
        assert len(keys) == len(set(keys)) == len(queue) == logged  # every answer exactly once
        assert {i for i, _ in keys} == set(queue) and answered["alice"] and answered["bob"]
        assert all(label == truth_of(int(i[1:])) and source == "serve" for i, _, label, source in reviews)
        by = {(i, r) for i, r in keys}
        assert all((i, "alice") in by for i in answered["alice"]) and all((i, "bob") in by for i in answered["bob"])
        store = RunStore.open(run_dir)
        notes = [r.note for revs in store.reviews().values() for r in revs if r.note]
        store.close()
        assert notes == ["checked <b>twice</b>"]
        lead = browser.new_context().new_page()
        lead.goto(server.links["lead"])
        table = lead.inner_text("table")
        assert "alice" in table and "bob" in table
    finally:
        server.stop()


def test_blind_audit_in_the_browser_shows_no_llm_label(browser: Any, tmp_path: Path) -> None:
    run_dir = make_serve_run(tmp_path, n=24)
    server = Server(run_dir, "--blind-audit", "--gold-share", "0.2")
    try:
        page = browser.new_context().new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(next(link for who, link in server.links.items() if who != "lead"))
        n = 0
        while (item := current_item(page)) is not None:
            assert page.query_selector("#suggestion") is None and "routed for" not in page.inner_text("main")
            press(page, key_for(truth_of(int(item[1:]))))
            n += 1
        assert n > 0 and dialogs == []
        reviews, logged = stored(run_dir)
        assert len(reviews) == logged and len(reviews) < n  # gold answers are not reviews
    finally:
        server.stop()


def test_multi_label_by_keyboard_toggles_and_submits(browser: Any, tmp_path: Path) -> None:
    run_dir = make_serve_run(tmp_path, n=18, kind="multi_label")
    server = Server(run_dir, "--reviewers", "alice")
    try:
        page = browser.new_context().new_page()
        page.goto(server.links["alice"])
        want: dict[str, str] = {}
        while (item := current_item(page)) is not None:
            k = int(item[1:])
            target = {truth_of(k), LABELS[(k + 2) % 3]} if k % 2 else {truth_of(k)}
            ticked = set(page.eval_on_selector_all("#answer input:checked", "els => els.map(e => e.value)"))
            for label in LABELS:
                if (label in ticked) != (label in target):
                    page.keyboard.press(key_for(label))  # toggles, does not submit
            assert current_item(page) == item
            press(page, "Enter")
            want[item] = json.dumps([x for x in LABELS if x in target])
        reviews, logged = stored(run_dir)
        assert {i: label for i, _, label, _ in reviews} == want and logged == len(want) > 0
    finally:
        server.stop()


SELECT = """([start, end]) => {
  const node = document.getElementById("text");
  const walker = document.createTreeWalker(node, NodeFilter.SHOW_TEXT);
  let at = 0, a = null, b = null, n;
  while ((n = walker.nextNode())) {
    const len = n.textContent.length;
    if (a === null && start <= at + len) a = [n, start - at];
    if (b === null && end <= at + len) b = [n, end - at];
    at += len;
  }
  window.getSelection().setBaseAndExtent(a[0], a[1], b[0], b[1]);
}"""


def test_spans_are_marked_by_selection_and_type_keys(browser: Any, tmp_path: Path) -> None:
    run_dir = make_serve_run(tmp_path, n=18, kind="spans")
    server = Server(run_dir, "--reviewers", "alice")
    try:
        page = browser.new_context().new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(server.links["alice"])
        want: dict[str, list[dict[str, object]]] = {}
        while (item := current_item(page)) is not None:
            text = page.eval_on_selector("#text", "el => JSON.parse(el.dataset.text)")
            while page.query_selector("#text mark") is not None:  # take the LLM's spans off
                page.keyboard.press("Backspace")
            k = int(item[1:])
            start = text.index("about") if "about" in text else 1
            page.evaluate(SELECT, [start, start + 5])
            page.keyboard.press(key_for(truth_of(k)))  # marks, does not submit
            assert current_item(page) == item and page.inner_text("#text mark") == text[start : start + 5]
            press(page, "Enter")
            want[item] = [{"start": start, "end": start + 5, "type": truth_of(k), "text": text[start : start + 5]}]
        reviews, logged = stored(run_dir)
        assert {i: json.loads(label) for i, _, label, _ in reviews} == want and logged == len(want) > 0
        assert dialogs == []
    finally:
        server.stop()
