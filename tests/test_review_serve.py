"""`labeler review serve`, in-process (Starlette's TestClient: no socket): escaping, CSRF and origin checks,
tokens, the blind audit, exactly-once answers, undo, overlap, gold items and concurrent answers. The run is
synthetic and every right answer is known in advance: the LLM is wrong on every 6th item, the truth of
item k is LABELS[k % 3], and items with k % 3 == 2 carry it in the gold column."""

from __future__ import annotations

import html
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from fakes import write_task

from labeler.config import load_config
from labeler.errors import ReviewError
from labeler.inputs import Row
from labeler.review.router import route_run
from labeler.review.serve.access import Desk, Settings
from labeler.review.serve.app import build_app
from labeler.review.serve.auth import Auth, same_origin
from labeler.review.serve.pages import asset_version
from labeler.review.serve.server import parse_reviewers, serve
from labeler.store import RunStore
from labeler.store.rows import Review
from labeler.types import Item, ItemResult

pytest.importorskip("starlette")
from starlette.testclient import TestClient

LABELS = ("business", "sport", "tech")
SCRIPT = '<script>alert("x")</script> & "quoted" <img src=x onerror=alert(1)>'
BASE = "http://127.0.0.1:8765"
CT = "application/x-www-form-urlencoded"
ORIGIN = {"origin": BASE}


def truth_of(k: int) -> str:
    return LABELS[k % 3]


def make_serve_run(root: Path, *, n: int = 60, kind: str = "single", long_text: bool = False) -> Path:
    """A routed run of `n` items: the LLM is wrong (confidence 0.3) on every 6th item, right (0.70..0.99) on
    the rest; item i00 (routed: wrong) holds an injected script; k % 3 == 2 items carry the gold label."""
    (root / "task").mkdir(parents=True)
    sections = {"routing": {"low_confidence": 0.6, "audit_fraction": 0.1, "seed": 4}}
    cfg = write_task(root / "task", labels=LABELS, task={"type": kind} if kind != "single" else None, sections=sections)
    task = load_config(cfg, env={})
    run_dir = root / "run"
    manifest = {
        "run_id": "serve1",
        "labels": list(LABELS),
        "members": [{"name": "default", "template_hash": "x", "endpoint": {"model": "test-model"}}],
        "config_path": str(cfg),
        "config": dict(task.raw),
    }
    store = RunStore.create(run_dir, manifest)
    rows = []
    for k in range(n):
        text = SCRIPT if k == 0 else f"text {k} about {truth_of(k)}" + (" and more" * 400 if long_text else "")
        rows.append(Row(Item(f"i{k:02d}", text, k + 1), gold=truth_of(k) if k % 3 == 2 else None))
    store.ingest(rows, members=["default"])

    def enc(label: str) -> str:
        if kind == "spans":  # the first word, typed by the truth (or the wrong label)
            return json.dumps([{"start": 0, "end": 4, "type": label, "text": "text"}])
        return json.dumps([label]) if kind == "multi_label" else label

    for k in range(n):
        t = enc(truth_of(k))
        wrong = enc(LABELS[(k + 1) % 3])
        res = (
            ItemResult(f"i{k:02d}", "default", "labeled", label=wrong, confidence=0.3)
            if k % 6 == 0
            else ItemResult(f"i{k:02d}", "default", "labeled", label=t, confidence=0.7 + (k % 30) / 100)
        )
        store.put_result(res)
    store.close()
    route_run(run_dir)
    return run_dir


def reviews_of(run_dir: Path) -> dict[tuple[str, str], Review]:
    store = RunStore.open(run_dir)
    try:
        return {(r.item_id, r.reviewer): r for revs in store.reviews().values() for r in revs}
    finally:
        store.close()


def field(page: str, form: str, name: str) -> str:
    """The value of input `name` inside the form with id `form` of `page`."""
    block = re.search(rf'<form[^>]*id="{form}".*?</form>', page, re.S)
    assert block, f"no form {form}"
    m = re.search(rf'name="{name}" value="([^"]*)"', block.group(0))
    assert m, f"no field {name} in form {form}"
    return html.unescape(m.group(1))


def item_id(page: str) -> str | None:
    m = re.search(r'<main id="item" data-item-id="([^"]*)"', page)
    return None if m is None else html.unescape(m.group(1))


class Page:
    """One signed-in browser: a TestClient with the session cookie of `who`."""

    def __init__(self, app: object, auth: Auth, who: str | None) -> None:
        self.client = TestClient(app, base_url=BASE)  # type: ignore[arg-type]
        token = next(t for t, name in auth.tokens.items() if name == who)
        r = self.client.get(f"/login?token={token}")
        assert r.status_code == 200
        self.page = r.text

    def reload(self) -> str:
        self.page = self.client.get("/").text
        return self.page

    def post(self, path: str, form: str, **fields: str) -> object:
        data = {"csrf": field(self.page, form, "csrf"), "nonce": field(self.page, form, "nonce")}
        if form != "undo":
            data["item_id"] = field(self.page, form, "item_id")
        data.update(fields)
        r = self.client.post(path, data=data, headers=ORIGIN)
        self.page = r.text
        return r

    def answer(self, label: str, **extra: str) -> object:
        return self.post("/answer", "answer", label=label, **extra)


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return make_serve_run(tmp_path)


@pytest.fixture
def opened(run: Path) -> Iterator[tuple[Desk, Auth, object]]:
    desk = Desk(run, Settings())
    auth = Auth.for_reviewers(["alice", "bob"])
    app = build_app(desk, auth, hosts=["127.0.0.1", "localhost"], reviewers=["alice", "bob"])
    yield desk, auth, app
    desk.close()


def queue_of(run_dir: Path) -> dict[str, object]:
    store = RunStore.open(run_dir)
    try:
        return {e.item_id: e for e in store.queue()}
    finally:
        store.close()


# --- escaping ------------------------------------------------------------------------------------------
def test_an_injected_script_in_a_text_is_escaped_text(opened: tuple[Desk, Auth, object]) -> None:
    _, auth, app = opened
    alice = Page(app, auth, "alice")
    assert item_id(alice.page) == "i00"  # rank 1: the most doubtful
    assert '<script>alert("x")</script>' not in alice.page and "<img src=x" not in alice.page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#34;quoted&#34; &lt;img src=x" in alice.page
    scripts = re.findall(r"<script[^>]*>", alice.page)
    assert scripts == [f'<script src="/static/review.js?v={asset_version()}" defer>']  # the one script, bundled
    r = alice.client.get("/")
    assert "script-src 'self'" in r.headers["content-security-policy"]  # no inline script could run anyway
    assert r.headers["x-frame-options"] == "DENY" and r.headers["referrer-policy"] == "same-origin"


def test_a_note_with_markup_is_stored_as_given_and_never_rendered_raw(opened: tuple[Desk, Auth, object]) -> None:
    desk, auth, app = opened
    alice = Page(app, auth, "alice")
    first = item_id(alice.page)
    alice.answer("sport", note="<b>bold</b> =cmd()")
    assert reviews_of(desk.run_dir)[(str(first), "alice")].note == "<b>bold</b> =cmd()"
    bob = Page(app, auth, None)  # the lead: the status page shows reviewer names, never raw markup
    assert "<b>bold</b>" not in bob.page


# --- tokens, sessions, CSRF, origin ------------------------------------------------------------------
def test_tokens_sign_in_one_reviewer_each_and_nothing_works_without(opened: tuple[Desk, Auth, object]) -> None:
    _, auth, app = opened
    anon = TestClient(app, base_url=BASE)  # type: ignore[arg-type]
    assert anon.get("/").status_code == 401
    assert anon.get("/status").status_code == 401
    assert anon.get("/login?token=not-a-token").status_code == 403
    assert len({t for t in auth.tokens}) == 3  # alice, bob, lead: distinct random tokens
    token = next(t for t, who in auth.tokens.items() if who == "alice")
    r = anon.get(f"/login?token={token}", follow_redirects=False)
    cookie = r.headers["set-cookie"].lower()
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert "httponly" in cookie and "samesite=lax" in cookie and token.lower() not in cookie
    alice = Page(app, auth, "alice")
    assert '<b id="reviewer">alice</b>' in alice.page
    assert alice.client.get("/status").status_code == 403  # the status page is the lead's
    lead = Page(app, auth, None)
    assert "<h1>Status</h1>" in lead.page


def test_posts_without_the_csrf_token_or_from_another_origin_are_refused(opened: tuple[Desk, Auth, object]) -> None:
    desk, auth, app = opened
    alice = Page(app, auth, "alice")
    good = {
        "csrf": field(alice.page, "answer", "csrf"),
        "nonce": field(alice.page, "answer", "nonce"),
        "item_id": field(alice.page, "answer", "item_id"),
        "label": "sport",
    }
    c = alice.client
    assert c.post("/answer", data={**good, "csrf": ""}, headers=ORIGIN).status_code == 403
    assert c.post("/answer", data={**good, "csrf": "x" * 43}, headers=ORIGIN).status_code == 403
    assert c.post("/answer", data=good, headers={"origin": "http://evil.example"}).status_code == 403
    assert c.post("/answer", data=good, headers={"origin": "null"}).status_code == 403
    assert c.post("/answer", data=good, headers={"referer": "http://evil.example/x"}).status_code == 403
    assert c.post("/answer", data=good, headers={**ORIGIN, "sec-fetch-site": "cross-site"}).status_code == 403
    bob = Page(app, auth, "bob")  # bob's session token does not work for alice's session
    assert (
        c.post("/answer", data={**good, "csrf": field(bob.page, "answer", "csrf")}, headers=ORIGIN).status_code == 403
    )
    assert reviews_of(desk.run_dir) == {}
    assert c.post("/answer", data=good, headers=ORIGIN).status_code == 200  # the same form, from the page
    assert set(reviews_of(desk.run_dir)) == {(good["item_id"], "alice")}


def test_a_request_for_another_host_name_is_refused(opened: tuple[Desk, Auth, object]) -> None:
    _, _, app = opened
    rebound = TestClient(app, base_url="http://attacker.example:8765")  # type: ignore[arg-type]
    assert rebound.get("/login?token=x").status_code == 400


def test_same_origin_rule() -> None:
    host = {"host": "127.0.0.1:8765"}
    assert same_origin({**host, "origin": "http://127.0.0.1:8765"})
    assert same_origin(host)  # no Origin, no Referer (a non-browser client): the CSRF token decides
    assert same_origin({**host, "referer": "http://127.0.0.1:8765/"})
    assert not same_origin({**host, "referer": "http://127.0.0.1:87650/"})
    assert not same_origin({**host, "origin": "http://127.0.0.1:9999"})


def test_only_bundled_static_files_are_served(opened: tuple[Desk, Auth, object]) -> None:
    _, _, app = opened
    c = TestClient(app, base_url=BASE)  # type: ignore[arg-type]
    assert c.get("/static/review.js").status_code == 200
    for path in (
        "/static/../access.py",
        "/static/%2e%2e/access.py",
        "/static/templates/base.html.j2",
        "/static/",
        "/report/../../manifest.json",
        "/run.sqlite",
    ):
        assert c.get(path).status_code == 404, path


# --- what an item shows: blind audit, gold items -----------------------------------------------------
def test_audit_items_never_show_the_llm_label_and_others_do(run: Path) -> None:
    queue = queue_of(run)
    desk = Desk(run, Settings())
    try:
        views = {i: desk.view(desk.tables.serve_item(i)) for i in queue}  # type: ignore[arg-type]
    finally:
        desk.close()
    audit = {i for i, e in queue.items() if e.audit}  # type: ignore[attr-defined]
    assert audit and audit != set(queue)
    for i, v in views.items():
        if i in audit:
            assert v.suggestion is None and v.confidence is None
        else:
            assert v.suggestion == queue[i].llm_label  # type: ignore[attr-defined]


def test_blind_audit_shows_no_suggestion_and_no_reason_anywhere(run: Path) -> None:
    desk = Desk(run, Settings(blind_audit=True, gold_share=0.2))
    auth = Auth.for_reviewers(["alice"])
    app = build_app(desk, auth, hosts=["127.0.0.1"], reviewers=["alice"])
    try:
        alice = Page(app, auth, "alice")
        seen = []
        while (i := item_id(alice.page)) is not None:
            seen.append(i)
            assert 'id="suggestion"' not in alice.page and "confidence" not in alice.page
            assert "routed for" not in alice.page and 'class="by-reason"' not in alice.page
            alice.answer(LABELS[0])
        assert len(seen) == desk.queued + desk.gold and desk.gold > 0
        ranks = [queue_of(run)[i].rank for i in seen if i in queue_of(run)]  # type: ignore[attr-defined]
        assert ranks != sorted(ranks)  # a shuffle, not rank order
    finally:
        desk.close()


def test_gold_items_look_like_audit_items_and_measure_reviewers(run: Path) -> None:
    desk = Desk(run, Settings(gold_share=0.25))
    auth = Auth.for_reviewers(["alice", "bob"])
    app = build_app(desk, auth, hosts=["127.0.0.1"], reviewers=["alice", "bob"])
    try:
        gold = desk.tables.serve_gold()
        assert len(gold) == desk.gold > 0 and not set(gold) & set(queue_of(run))
        for g in gold:
            v = desk.view(desk.tables.serve_item(g))  # type: ignore[arg-type]
            assert v.suggestion is None and v.reasons == ("audit",)
        alice, bob = Page(app, auth, "alice"), Page(app, auth, "bob")
        # in turns, alice answers every item right and bob every item wrong (the truth of item k: LABELS[k % 3])
        while True:
            moved = False
            for who, shift in ((alice, 0), (bob, 1)):
                if (i := item_id(who.reload())) is not None:
                    who.answer(LABELS[(int(i[1:]) + shift) % 3])
                    moved = True
            if not moved:
                break
        stored = reviews_of(run)
        assert not {i for i, _ in stored} & set(gold)  # gold answers are no reviews
        rows = {r.reviewer: r for r in desk.status(["alice", "bob"])}
        qa, qb = rows["alice"].quality, rows["bob"].quality
        assert qa is not None and qb is not None
        assert qa.gold_n + qb.gold_n == len(gold) and qa.gold_n and qb.gold_n  # overlap 1: each answered once
        assert qa.gold_accuracy == 1.0 and qb.gold_accuracy == 0.0 and qb.flagged and not qa.flagged
        lead = Page(app, auth, None)
        assert f"100% of {qa.gold_n}" in lead.page and f"0% of {qb.gold_n}" in lead.page
    finally:
        desk.close()


# --- exactly once, undo, overlap, concurrency ------------------------------------------------------
def test_a_retried_answer_is_stored_exactly_once(opened: tuple[Desk, Auth, object]) -> None:
    desk, auth, app = opened
    alice = Page(app, auth, "alice")
    form = {k: field(alice.page, "answer", k) for k in ("csrf", "nonce", "item_id")}
    first = alice.client.post("/answer", data={**form, "label": "sport"}, headers=ORIGIN)
    again = alice.client.post("/answer", data={**form, "label": "tech"}, headers=ORIGIN)  # a double submit
    assert first.status_code == again.status_code == 200 and "already saved" in again.text
    stored = reviews_of(desk.run_dir)
    assert stored == {(form["item_id"], "alice"): Review(form["item_id"], "alice", "sport", None, None, "serve")}
    assert desk.tables.serve_counts() == {"alice": {"answer": 1}}


def test_undo_takes_back_the_last_answer_once(opened: tuple[Desk, Auth, object]) -> None:
    desk, auth, app = opened
    alice = Page(app, auth, "alice")
    a = item_id(alice.page)
    alice.answer("sport")
    b = item_id(alice.page)
    alice.answer("tech")
    c = item_id(alice.page)
    assert len({a, b, c}) == 3 and set(reviews_of(desk.run_dir)) == {(a, "alice"), (b, "alice")}
    undo_form = {k: field(alice.page, "undo", k) for k in ("csrf", "nonce")}
    r = alice.client.post("/undo", data=undo_form, headers=ORIGIN)
    assert "last answer taken back" in r.text and item_id(r.text) == b  # the undone item comes back first
    alice.client.post("/undo", data=undo_form, headers=ORIGIN)  # the same undo again: takes back nothing more
    assert set(reviews_of(desk.run_dir)) == {(a, "alice")}
    alice.page = r.text
    alice.answer("business")
    assert reviews_of(desk.run_dir)[(str(b), "alice")].label == "business"
    alice.post("/skip", "skip")  # c skipped: the next is another item; undo brings c back
    assert item_id(alice.page) not in (a, b, c)
    alice.post("/undo", "undo")
    assert item_id(alice.page) == c


def test_overlap_serves_an_item_until_enough_reviewers_answered(run: Path) -> None:
    for overlap in (1, 2):
        desk = Desk(run, Settings(overlap=overlap))
        auth = Auth.for_reviewers(["alice", "bob", "carol"])
        app = build_app(desk, auth, hosts=["127.0.0.1"], reviewers=["alice", "bob", "carol"])
        try:
            alice = Page(app, auth, "alice")
            first = item_id(alice.page)
            alice.answer("sport")
            bob = Page(app, auth, "bob")
            assert (item_id(bob.page) == first) is (overlap == 2)
            if overlap == 2:
                bob.answer("sport")
                assert item_id(Page(app, auth, "carol").page) != first
        finally:
            desk.close()
        store = RunStore.open(run)
        store.clear_reviews_and_queue()
        store.close()
        route_run(run)


def test_two_reviewers_answering_the_same_item_at_once_are_both_kept(opened: tuple[Desk, Auth, object]) -> None:
    desk, auth, app = opened
    alice, bob = Page(app, auth, "alice"), Page(app, auth, "bob")
    assert item_id(alice.page) == item_id(bob.page)  # both loaded it before either answered
    same = str(item_id(alice.page))
    barrier = threading.Barrier(2)
    codes: list[int] = []

    def go(p: Page, label: str) -> None:
        form = {k: field(p.page, "answer", k) for k in ("csrf", "nonce", "item_id")}
        barrier.wait()
        codes.append(p.client.post("/answer", data={**form, "label": label}, headers=ORIGIN).status_code)

    threads = [threading.Thread(target=go, args=(alice, "sport")), threading.Thread(target=go, args=(bob, "tech"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200, 200]
    stored = reviews_of(desk.run_dir)
    assert stored[(same, "alice")].label == "sport" and stored[(same, "bob")].label == "tech"


def test_an_answer_is_checked_by_the_import_rule(opened: tuple[Desk, Auth, object]) -> None:
    desk, auth, app = opened
    alice = Page(app, auth, "alice")
    r = alice.answer("<i>nope</i>")
    assert r.status_code == 400 and "is not one of: business, sport, tech" in r.text  # type: ignore[attr-defined]
    assert "<i>nope</i>" not in r.text and "&lt;i&gt;nope&lt;/i&gt;" in r.text  # type: ignore[attr-defined]
    alice.reload()
    r = alice.post("/answer", "answer", item_id="i-not-there", label="sport")
    assert r.status_code == 400 and "unknown item id" in r.text  # type: ignore[attr-defined]
    alice.reload()
    assert alice.post("/answer", "answer", nonce="short", label="sport").status_code == 400  # type: ignore[attr-defined]
    assert reviews_of(desk.run_dir) == {}


def test_progress_counts_per_reason_and_the_done_page_links_the_report(opened: tuple[Desk, Auth, object]) -> None:
    desk, auth, app = opened
    queue = queue_of(desk.run_dir)
    alice = Page(app, auth, "alice")
    assert f"0 of {len(queue)} items done" in alice.page
    reasons = {r for e in queue.values() for r in e.reasons}  # type: ignore[attr-defined]
    assert reasons and all(f"{r} 0/" in alice.page for r in reasons)
    while item_id(alice.page) is not None:
        alice.answer("sport")
    assert f"{len(queue)} of {len(queue)} items done" in alice.page and 'href="/report"' in alice.page
    r = alice.client.get("/report")
    assert "No report yet" in r.text
    r = alice.client.post("/report", data={"csrf": field(r.text, "report-form", "csrf")}, headers=ORIGIN)
    assert r.status_code == 200 and "<html" in r.text.lower()
    assert "sandbox" in r.headers["content-security-policy"]
    assert desk.report_path().is_file()


# --- starting the server -----------------------------------------------------------------------------
def test_serve_refuses_the_network_without_named_reviewers(tmp_path: Path) -> None:
    with pytest.raises(ReviewError, match="--reviewers"):
        serve(tmp_path, host="0.0.0.0")
    with pytest.raises(ReviewError, match="plain name"):
        parse_reviewers("alice,<b>")
    with pytest.raises(ReviewError, match="twice"):
        parse_reviewers("alice,alice")
    assert parse_reviewers(" alice, bob ") == ["alice", "bob"]


def test_multi_label_ticks_the_suggestion_and_stores_the_encoded_set(tmp_path: Path) -> None:
    run = make_serve_run(tmp_path, n=30, kind="multi_label")
    desk = Desk(run, Settings())
    auth = Auth.for_reviewers(["alice"])
    app = build_app(desk, auth, hosts=["127.0.0.1"], reviewers=["alice"])
    try:
        queue = queue_of(run)
        alice = Page(app, auth, "alice")
        first = str(item_id(alice.page))
        llm = json.loads(queue[first].llm_label)  # type: ignore[attr-defined]
        assert 'type="checkbox" name="labels"' in alice.page and 'id="accept"' not in alice.page
        ticked = re.findall(r'value="(\w+)" data-key="\d" checked', alice.page)
        assert ticked == ([] if queue[first].audit else llm)  # type: ignore[attr-defined]
        r = alice.answer("", labels="nope")
        assert r.status_code == 400 and "label &#39;nope&#39; is not one of: business, sport, tech<" in r.text  # type: ignore[attr-defined]
        alice.reload()
        data = {k: field(alice.page, "answer", k) for k in ("csrf", "nonce", "item_id")}
        body = [*data.items(), ("labels", "tech"), ("labels", "business")]
        r2 = alice.client.post("/answer", content=urlencode(body), headers={**ORIGIN, "content-type": CT})
        assert r2.status_code == 200
        assert (
            reviews_of(run)[(first, "alice")].label == desk.kind.encode(("business", "tech")) == '["business", "tech"]'
        )
        twice = [*data.items(), ("labels", "tech"), ("labels", "tech")]
        alice.reload()
        twice = [(k, field(alice.page, "answer", k) if k in data else v) for k, v in twice]
        r3 = alice.client.post("/answer", content=urlencode(twice), headers={**ORIGIN, "content-type": CT})
        assert r3.status_code == 400 and "named twice" in r3.text
    finally:
        desk.close()


def test_the_cli_registers_serve_without_importing_the_server_stack() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from labeler.cli import build_parser; p = build_parser();"
        "a = p.parse_args(['review', 'serve', 'RUN', '--reviewers', 'a,b', '--overlap', '2']);"
        "print(a.fn.__name__, a.reviewers, a.overlap, 'starlette' in sys.modules, 'uvicorn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["cmd_serve", "a,b", "2", "False", "False"]


def test_a_correction_reason_goes_with_the_answer_and_is_checked(opened: tuple[Desk, Auth, object]) -> None:
    desk, auth, app = opened
    alice = Page(app, auth, "alice")
    first = str(item_id(alice.page))
    assert 'id="suggestion"' in alice.page and 'name="correction_reason"' in alice.page
    r = alice.answer("sport", correction_reason="not a reason")
    assert r.status_code == 400 and "correction reason" in r.text  # type: ignore[attr-defined]
    alice.reload()
    alice.answer("sport", correction_reason="ambiguous")
    assert reviews_of(desk.run_dir)[(first, "alice")].correction_reason == "ambiguous"


def test_spans_are_read_by_the_span_parser_and_stored_encoded(tmp_path: Path) -> None:
    run = make_serve_run(tmp_path, n=30, kind="spans")
    desk = Desk(run, Settings())
    auth = Auth.for_reviewers(["alice"])
    app = build_app(desk, auth, hosts=["127.0.0.1"], reviewers=["alice"])
    try:
        alice = Page(app, auth, "alice")
        first = str(item_id(alice.page))
        text = SCRIPT
        assert first == "i00" and 'data-text=\'"\\u003cscript\\u003ealert(\\"x\\")' in alice.page
        assert "<script>alert" not in alice.page  # escaped in the text and in the data attribute
        marked = json.loads(field(alice.page, "answer", "spans"))
        assert marked == [{"start": 0, "end": 4, "type": "sport"}]  # the LLM's span, pre-marked (i00: wrong type)
        r = alice.answer("", spans=json.dumps([{"start": 0, "end": 999, "type": "tech"}]))
        assert r.status_code == 400 and "outside the text" in r.text  # type: ignore[attr-defined]
        alice.reload()
        r = alice.answer("", spans=json.dumps([{"start": 1, "end": 7, "type": "nope"}]))
        assert r.status_code == 400 and "is not one of" in r.text  # type: ignore[attr-defined]
        alice.reload()
        alice.answer("", spans=json.dumps([{"start": 1, "end": 7, "type": "tech"}]))
        want = desk.kind.encode(
            desk.kind.decode(json.dumps([{"start": 1, "end": 7, "type": "tech", "text": text[1:7]}]))
        )
        assert reviews_of(run)[(first, "alice")].label == want
        assert json.loads(str(want))[0]["text"] == "script"
    finally:
        desk.close()


def test_undo_of_an_answer_that_replaced_one_puts_the_earlier_back(opened: tuple[Desk, Auth, object]) -> None:
    desk, auth, app = opened
    tab1, tab2 = Page(app, auth, "alice"), Page(app, auth, "alice")  # two tabs on one item
    same = str(item_id(tab1.page))
    assert item_id(tab2.page) == same
    tab1.answer("sport")
    tab2.answer("tech", note="second thoughts")
    assert reviews_of(desk.run_dir)[(same, "alice")].label == "tech"
    tab2.post("/undo", "undo")
    back = reviews_of(desk.run_dir)[(same, "alice")]
    assert (back.label, back.note, back.source) == ("sport", None, "serve")
    tab2.post("/undo", "undo")
    assert reviews_of(desk.run_dir) == {} and item_id(tab2.page) == same
