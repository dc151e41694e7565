"""Who is on the page, and whether a POST may be trusted. Pure: no server, no sockets.

- Every reviewer has a random token (secrets.token_urlsafe); `serve` prints one link per reviewer,
  `/login?token=...`, and one for the lead, who sees the status page. Opening a link starts a session:
  a random session id in an HttpOnly, SameSite=Lax cookie, kept in this process's memory only (a
  restart prints new links). The token leaves the address bar at once (a redirect).
- Each session has its own CSRF token, put into every form of the page and checked on every POST.
- A POST must also come from the page's own origin: an Origin (or, without one, a Referer) naming
  another site, or `Sec-Fetch-Site: cross-site`, is refused, whatever it carries.
- The Host header must name the address served (a DNS-rebinding page cannot reach a loopback server).
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

COOKIE = "labeler_review"
LEAD = "lead"


@dataclass(frozen=True)
class Session:
    sid: str
    reviewer: str | None  # None: the lead (status page only)
    csrf: str

    @property
    def lead(self) -> bool:
        return self.reviewer is None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str) -> list[str]:
    """The Host header values to accept when bound to `host` (Starlette's TrustedHostMiddleware patterns)."""
    if is_loopback(host):
        return ["127.0.0.1", "localhost", "[::1]"]
    if host in ("0.0.0.0", "::", ""):
        return ["*"]  # every address of the machine: the tokens guard it
    return [host]


@dataclass
class Auth:
    """Tokens (token -> reviewer, None for the lead) and the live sessions."""

    tokens: dict[str, str | None]
    sessions: dict[str, Session] = field(default_factory=dict)

    @classmethod
    def for_reviewers(cls, reviewers: Iterable[str]) -> Auth:
        tokens: dict[str, str | None] = {secrets.token_urlsafe(24): r for r in reviewers}
        tokens[secrets.token_urlsafe(24)] = None
        return cls(tokens)

    def links(self, base: str) -> list[tuple[str, str]]:
        """(who, link) for every token: the reviewers, then the lead."""
        rows = [(who or LEAD, f"{base}/login?token={t}") for t, who in self.tokens.items()]
        return sorted(rows, key=lambda r: (r[0] == LEAD, r[0]))

    def login(self, token: str) -> Session | None:
        """A new session for a known token (compared in constant time), else None."""
        found = False
        who: str | None = None
        for t, name in self.tokens.items():
            if secrets.compare_digest(t.encode(), token.encode()):
                found, who = True, name
        if not found:
            return None
        s = Session(secrets.token_urlsafe(32), who, secrets.token_urlsafe(32))
        self.sessions[s.sid] = s
        return s

    def session(self, sid: str | None) -> Session | None:
        return None if not sid else self.sessions.get(sid)


def csrf_ok(session: Session, sent: str | None) -> bool:
    return bool(sent) and secrets.compare_digest(session.csrf.encode(), str(sent).encode())


def same_origin(headers: Mapping[str, str], scheme: str = "http") -> bool:
    """Whether a POST's headers say it came from a page of this server (see the module docstring)."""
    host = headers.get("host", "")
    own = f"{scheme}://{host}"
    if headers.get("sec-fetch-site", "") in ("cross-site", "same-site"):
        return False
    origin = headers.get("origin")
    if origin is not None:
        return origin == own
    referer = headers.get("referer")
    return referer is None or referer == own or referer.startswith(own + "/")
