"""The review page as a Starlette application. Routes (none takes a path parameter):

    GET  /login?token=T   start a session for the reviewer (or the lead) of token T; redirect to /
    GET  /                the reviewer's next item (the lead: the status page)
    POST /answer          label(s), note, reason for item_id    } each with the session's csrf field and
    POST /skip            pass over item_id                     } a per-answer nonce: a retry changes
    POST /undo            take back the last answer or skip     } nothing; then 303 to /
    GET  /status          the lead's view: per-reviewer counts, gold accuracy, agreement on overlaps
    GET  /report          the evaluation report's page; POST /report builds it (`labeler eval`)
    GET  /report/view     the rendered report (a fixed file of the run, sandboxed by its CSP)
    GET  /static/review.js, /static/review.css   the bundled assets (a fixed table, read once)

Every response carries a Content-Security-Policy that allows only this server's own script and style (no
inline script runs, so text that slipped past escaping could still not execute), no framing, no referrer to
other sites (the login link carries a token; "same-origin", as "no-referrer" makes Chromium send
"Origin: null" on the page's own POSTs), no caching but of the hashed static links. The store is used from
the event loop's one thread, so requests take turns on it; every write is one short transaction.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labeler.errors import LabelerError, ReviewError
from labeler.review.serve.access import NOTE_MAX, Desk
from labeler.review.serve.auth import COOKIE, Auth, Session, csrf_ok, same_origin
from labeler.review.serve.pages import render, static

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'none'; sandbox"
MAX_BODY = 64 * 1024
HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",  # no-referrer would make Chromium send "Origin: null" on our own POSTs
    "x-frame-options": "DENY",
    "cache-control": "no-store",
    "cross-origin-opener-policy": "same-origin",
}


class SecurityHeaders:
    """Adds HEADERS, and the page CSP where a response set none, to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with(message: Message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.encode(), v.encode()) for k, v in HEADERS.items() if k.encode() not in have]
                if b"content-security-policy" not in have:
                    extra.append((b"content-security-policy", PAGE_CSP.encode()))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with)


class Form:
    """A POST's urlencoded fields: `get` the first value of a field, `all` of them (a multi-label answer)."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self.fields = fields

    def get(self, name: str, default: str = "") -> str:
        values = self.fields.get(name)
        return values[0] if values else default

    def all(self, name: str) -> list[str]:
        return list(self.fields.get(name, []))


def _nonces() -> dict[str, str]:
    return {k: secrets.token_urlsafe(16) for k in ("answer", "skip", "undo")}


def build_app(desk: Desk, auth: Auth, *, hosts: list[str], reviewers: list[str]) -> Starlette:
    """The application for one opened run. `hosts`: accepted Host headers; `reviewers`: the names served."""
    run_name = desk.run_dir.name

    def page(name: str, session: Session | None, status: int = 200, **ctx: Any) -> HTMLResponse:
        ctx.setdefault("flash", None)
        who = None if session is None else session.reviewer
        return HTMLResponse(render(name, run_name=run_name, who=who, **ctx), status_code=status)

    def message(title: str, text: str, status: int) -> HTMLResponse:
        return page("message.html.j2", None, status, title=title, message=text)

    def session_of(request: Request) -> Session | None:
        return auth.session(request.cookies.get(COOKIE))

    def signed_in(
        handler: Callable[[Request, Session], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def route(request: Request) -> Response:
            s = session_of(request)
            if s is None:
                return message("Not signed in", "Open the link `labeler review serve` printed for you.", 401)
            return await handler(request, s)

        return route

    def posted(
        handler: Callable[[Request, Session, Form], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        """A POST: signed in, from this server's own page (origin), with the session's CSRF token."""

        async def route(request: Request, s: Session) -> Response:
            if not same_origin(request.headers, request.url.scheme):
                return message("Refused", "This request came from another site.", 403)
            body = await request.body()
            if len(body) > MAX_BODY:
                return message("Refused", "The request is too large.", 413)
            form = Form(parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True))
            if not csrf_ok(s, form.get("csrf")):
                return message("Refused", "The page's form token is missing or stale: reload the page.", 403)
            return await handler(request, s, form)

        return signed_in(route)

    async def login(request: Request) -> Response:
        s = auth.login(request.query_params.get("token", ""))
        if s is None:
            return message("Unknown link", "That token is not one of this server's: use the link it printed.", 403)
        r = RedirectResponse("/status" if s.lead else "/", status_code=303)
        r.set_cookie(COOKIE, s.sid, httponly=True, samesite="lax", path="/", secure=request.url.scheme == "https")
        return r

    async def home(request: Request, s: Session) -> Response:
        if s.reviewer is None:
            return RedirectResponse("/status", status_code=303)
        flash = request.query_params.get("m")
        flash = {"undone": "last answer taken back", "nothing": "nothing to undo", "retry": "already saved"}.get(
            flash or ""
        )
        item = desk.next_view(s.reviewer)
        ctx: dict[str, Any] = dict(csrf=s.csrf, nonces=_nonces(), progress=desk.progress(s.reviewer), flash=flash)
        if item is None:
            return page("done.html.j2", s, **ctx)
        return page(
            "item.html.j2",
            s,
            item=item,
            labels=desk.labels,
            multi=desk.multi,
            spans=desk.spans,
            reasons=desk.task.review.reasons,
            note_max=NOTE_MAX,
            **ctx,
        )

    def back(m: str | None = None) -> RedirectResponse:
        return RedirectResponse("/" if m is None else f"/?m={m}", status_code=303)

    async def answer(request: Request, s: Session, form: Form) -> Response:
        if s.reviewer is None:
            return message("Refused", "The lead's link shows the status page; answer with a reviewer's link.", 403)
        label: str | list[str] = form.get("label", "")
        if desk.multi:
            label = form.all("labels")  # every label ticked
        elif desk.spans:
            label = [form.get("spans", "[]")]  # the marked spans, as JSON
        try:
            done = desk.answer(
                s.reviewer,
                form.get("item_id", ""),
                label,
                nonce=form.get("nonce", ""),
                note=form.get("note"),
                correction_reason=form.get("correction_reason") or None,
            )
        except ReviewError as exc:
            return message("Not saved", str(exc), 400)
        return back(None if done.fresh else "retry")

    async def skip(request: Request, s: Session, form: Form) -> Response:
        if s.reviewer is None:
            return message("Refused", "The lead does not review; use a reviewer's link.", 403)
        try:
            desk.skip(s.reviewer, form.get("item_id", ""), nonce=form.get("nonce", ""))
        except ReviewError as exc:
            return message("Not saved", str(exc), 400)
        return back()

    async def undo(request: Request, s: Session, form: Form) -> Response:
        if s.reviewer is None:
            return message("Refused", "The lead does not review; use a reviewer's link.", 403)
        try:
            done = desk.undo(s.reviewer, nonce=form.get("nonce", ""))
        except ReviewError as exc:
            return message("Not saved", str(exc), 400)
        return back("retry" if not done.fresh else "undone" if done.item_id else "nothing")

    async def status(request: Request, s: Session) -> Response:
        if s.reviewer is not None:
            return message("Lead only", "The status page is on the lead's link.", 403)
        return page(
            "status.html.j2",
            s,
            rows=desk.status(reviewers),
            progress=desk.progress(""),
            queued=desk.queued,
            gold=desk.gold,
            overlap=desk.settings.overlap,
            blind=desk.settings.blind_audit,
        )

    def report_page(s: Session, message_text: str | None = None, status_code: int = 200) -> HTMLResponse:
        path = desk.report_path()
        written = None
        if path.is_file():
            written = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        return page(
            "report.html.j2",
            s,
            status_code,
            csrf=s.csrf,
            exists=written is not None,
            written=written,
            message=message_text,
        )

    async def report(request: Request, s: Session) -> Response:
        return report_page(s)

    async def build_report(request: Request, s: Session, form: Form) -> Response:
        try:
            await asyncio.to_thread(desk.build_report)
        except LabelerError as exc:
            return report_page(s, f"labeler eval could not build the report: {exc}", 409)
        return RedirectResponse("/report/view", status_code=303)

    async def report_view(request: Request, s: Session) -> Response:
        path = desk.report_path()
        if not path.is_file():
            return RedirectResponse("/report", status_code=303)
        return HTMLResponse(path.read_text(encoding="utf-8"), headers={"content-security-policy": REPORT_CSP})

    def asset(name: str) -> Callable[[Request], Awaitable[Response]]:
        body, media = static()[name]

        async def route(request: Request) -> Response:
            return Response(body, media_type=media, headers={"cache-control": "max-age=86400, immutable"})

        return route

    routes = [
        Route("/login", login),
        Route("/", signed_in(home)),
        Route("/answer", posted(answer), methods=["POST"]),
        Route("/skip", posted(skip), methods=["POST"]),
        Route("/undo", posted(undo), methods=["POST"]),
        Route("/status", signed_in(status)),
        Route("/report", signed_in(report)),
        Route("/report", posted(build_report), methods=["POST"]),
        Route("/report/view", signed_in(report_view)),
        *(Route(f"/static/{name}", asset(name)) for name in static()),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
    ]
    middleware = [Middleware(SecurityHeaders), Middleware(TrustedHostMiddleware, allowed_hosts=hosts)]
    return Starlette(routes=routes, middleware=middleware)
