"""The page's templates and static files.

Templates render through one Jinja2 environment with autoescape on for every template: every item text,
label, reason, note, reviewer name and error message is HTML-escaped where it is written into the page.
The static files are a fixed set bundled in the package (`STATIC`), read once; a request names one of
them by a key of that table, never by a path.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from typing import Any

import jinja2

STATIC_FILES = {"review.js": "text/javascript; charset=utf-8", "review.css": "text/css; charset=utf-8"}


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("labeler.review.serve", "templates"),
        autoescape=True,  # every template, whatever its name ends in
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(name: str, **context: Any) -> str:
    return _env().get_template(name).render(asset_version=asset_version(), **context)


@cache
def asset_version() -> str:
    """A hash of the bundled files, in their links (`?v=`), so a browser may cache them for good."""
    return hashlib.sha256(b"".join(body for body, _ in static().values())).hexdigest()[:12]


@cache
def static() -> dict[str, tuple[bytes, str]]:
    """name -> (content, media type) of the bundled static files."""
    folder = resources.files("labeler.review.serve") / "static"
    return {name: ((folder / name).read_bytes(), media) for name, media in STATIC_FILES.items()}
