"""Text from the corpus and the task (item texts, label and reviewer names, notes, run ids) made safe to show.
Pure functions; both report renderers and the terminal summary use them, so they escape the same way.

    visible(s)   control characters made visible: C0 and C1 controls, DEL and the bidirectional-override
                 and line-separator characters become \\xNN / \\uNNNN; tab, CR and newline become a space
                 (with newlines=True a newline is kept and CR LF becomes it)
    html(s)      visible(s), then & < > " ' [ ] as character references
    markdown(s)  visible(s), then & < > [ ] as character references (no raw HTML, no links or images) and
                 \\ ` * _ ~ # | $ backslash-escaped (no emphasis, code spans, headings, strikethrough, maths,
                 table cells); the text renders as itself

A Markdown renderer shows `&lt;script&gt;` as `<script>`, `&#91;x&#93;(http://evil)` as text, and `\\|` inside
a table cell as `|`, so nothing is lost on screen; only the source of report.md looks escaped.
"""

from __future__ import annotations

import re

_CONTROL = re.compile("[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SPACE = re.compile("\r\n|[\t\r\n]")
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;", "[": "&#91;", "]": "&#93;"}
_MD = {
    **{c: _HTML[c] for c in "&<>[]"},
    **{c: "\\" + c for c in "\\`*_~#|$"},
}
_HTML_RE = re.compile("[" + re.escape("".join(_HTML)) + "]")
_MD_RE = re.compile("[" + re.escape("".join(_MD)) + "]")


def _code(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def visible(text: object, *, newlines: bool = False) -> str:
    """str(text) with every control character visible (\\x1b) and tabs/line breaks as spaces."""
    s = _CONTROL.sub(_code, str(text))
    if newlines:
        return _SPACE.sub(lambda m: "\n" if m.group() in ("\r\n", "\n", "\r") else " ", s)
    return _SPACE.sub(" ", s)


def html(text: object) -> str:
    """Text for an HTML element or attribute value."""
    return _HTML_RE.sub(lambda m: _HTML[m.group()], visible(text))


def markdown(text: object) -> str:
    """Text for a Markdown paragraph, list item or table cell: renders as itself, on one line."""
    return _MD_RE.sub(lambda m: _MD[m.group()], visible(text))
