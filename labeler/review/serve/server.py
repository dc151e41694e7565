"""`labeler review serve`: open the run, print one link per reviewer (and the lead's), run uvicorn.

Binds 127.0.0.1 unless told otherwise. On any other address the page is reachable from the network, so
it starts only with named reviewers (--reviewers), each signing in with their own token; on loopback
without --reviewers the one reviewer is you (your login name), still with a token link.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Sequence
from pathlib import Path

from labeler.errors import ReviewError
from labeler.review.serve.access import Desk, Settings
from labeler.review.serve.auth import Auth, allowed_hosts, is_loopback


def parse_reviewers(text: str | None) -> list[str]:
    """ "alice,bob" -> ["alice", "bob"]: names of letters, digits and . _ - only, no repeats."""
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    for n in names:
        if not n.replace(".", "").replace("_", "").replace("-", "").isalnum() or len(n) > 64:
            raise ReviewError(f"--reviewers: {n!r} is not a plain name; use letters, digits, '.', '_' or '-'")
    if len(set(names)) != len(names):
        raise ReviewError("--reviewers names someone twice; list each reviewer once")
    return names


def serve(
    run_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    reviewers: Sequence[str] = (),
    settings: Settings | None = None,
    write: Callable[[str], None] = print,
) -> None:
    """Serve the run's review queue until interrupted."""
    if not is_loopback(host) and not reviewers:
        raise ReviewError(
            f"--host {host} opens the page to the network: name the reviewers (--reviewers alice,bob) so each "
            "signs in with a token"
        )
    if not 0 < port < 65536:
        raise ReviewError(f"--port must be 1..65535, got {port}")
    settings = settings or Settings()
    names = list(reviewers) or [getpass.getuser()]
    try:  # the server stack loads only when the command runs
        import uvicorn

        from labeler.review.serve.app import build_app
    except ImportError as exc:
        raise ReviewError(
            f"labeler review serve needs Starlette and uvicorn ({exc.name} is missing): pip install 'labeler[serve]'"
        ) from None

    desk = Desk(run_dir, settings)
    try:
        auth = Auth.for_reviewers(names)
        app = build_app(desk, auth, hosts=allowed_hosts(host), reviewers=names)
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        base = f"http://{shown}:{port}"
        write(
            f"serving {desk.queued} queued items"
            + (f" + {desk.gold} gold items" if desk.gold else "")
            + f" of {run_dir} at {base} ({settings.overlap} reviewer(s) per item"
            + (", blind audit" if settings.blind_audit else "")
            + ")"
        )
        if desk.gold < desk.gold_wanted:
            write(f"warning: only {desk.gold} of the {desk.gold_wanted} gold items asked for exist outside the queue")
        for who, link in auth.links(base):
            write(f"  {who}: {link}")
        write("answers are saved in the run as they are given; Ctrl-C stops the server")
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
    finally:
        desk.close()
