"""Where a review came from: the tool, the server and the project (Label Studio project id, Argilla
dataset), so one project's answers never rewrite another's.

A server is named by `server_key`: the address as a person may spell it, normalised so that the spellings
of one server are one key: the scheme and host in lower case, the loopback names (`localhost`,
`127.0.0.1`, `::1`) as 127.0.0.1, the default port of the scheme dropped, trailing slashes, the query and
the fragment dropped. `Origin.key()` is what the run stores with each review (reviews.origin) and in the
live sync's meta: "<tool> <server or -> <project or ->". A file export names its project (Label Studio's
JSON export does: "project" on each task) but not its server; such an origin matches the run's when the
projects match. Pure functions, no sockets.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "localhost.localdomain", "ip6-localhost"})
DEFAULT_PORTS = {"http": 80, "https": 443}


def server_key(url: str) -> str:
    """One key for every spelling of one server address (see the module docstring)."""
    raw = url.strip()
    parts = urlsplit(raw if "://" in raw else f"http://{raw}")
    scheme = (parts.scheme or "http").lower()
    host = (parts.hostname or "").lower()
    host = "127.0.0.1" if host in LOOPBACK else host
    try:
        port = parts.port
    except ValueError:  # not a number: keep the address as written, only tidied
        return raw.rstrip("/").lower()
    shown = f"[{host}]" if ":" in host else host
    if port is not None and port != DEFAULT_PORTS.get(scheme):
        shown += f":{port}"
    return f"{scheme}://{shown}{parts.path.rstrip('/')}"


@dataclass(frozen=True)
class Origin:
    tool: str
    server: str | None = None  # a server_key; None when the source does not say (a file export)
    project: str | None = None  # Label Studio project id, Argilla dataset name; None when unknown

    def key(self) -> str:
        return f"{self.tool} {self.server or '-'} {self.project or '-'}"

    @classmethod
    def parse(cls, key: str) -> Origin:
        tool, server, project = [*key.split(" ", 2), "-", "-"][:3]
        return cls(tool, None if server == "-" else server, None if project == "-" else project)

    def describe(self) -> str:
        """"labelstudio project 1 at http://127.0.0.1:8080" (as much as is known)."""
        what = "dataset" if self.tool == "argilla" else "project"
        out = self.tool + (f" {what} {self.project}" if self.project else "")
        return out + (f" at {self.server}" if self.server else "")


def claims(stored_origin: str | None, origin: str) -> bool:
    """Whether a sync from `origin` may replace or remove a stored review of the same source: one of the
    same project, or whose project is not known (stored before reviews carried an origin, or read from an
    export that names none). Two known servers must be the same server too."""
    if stored_origin is None or stored_origin == origin:
        return True
    a, b = Origin.parse(stored_origin), Origin.parse(origin)
    if a.tool != b.tool:
        return False
    if a.project is None or b.project is None:
        return True
    return a.project == b.project and (a.server is None or b.server is None or a.server == b.server)
