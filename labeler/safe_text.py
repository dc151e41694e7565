"""Text from the data, made safe for the programs people read it with: spreadsheets and terminals.

Spreadsheets (OWASP "CSV injection"): a cell that starts with = + - @ (or a tab or CR), also after
leading whitespace, is run as a formula by Excel, LibreOffice and Google Sheets. `csv_cell` prefixes
such a cell with one single quote; `csv_uncell` takes it off again when we read our own CSV back, so
every value round-trips exactly. A cell that itself starts with ' followed by one of those characters
gets one more ', which keeps the mapping reversible:

    csv_uncell(csv_cell(s)) == s   for every string s

Terminals: ESC starts sequences that clear the screen, recolour, move the cursor or retitle the window
(CSI, OSC), CR rewrites the line from its start, and the bidi overrides reorder what is shown.
`visible` shows each such character as a symbol instead: C0 controls as their U+2400 pictures (␛, ␍,
...), DEL as ␡, C1 controls, bidi controls and line/paragraph separators as <U+XXXX>; it keeps \\n and
\\t. `visible_line` also shows \\n and \\t, for one-line values (ids, labels, reasons). `quoted` puts a
gutter before every line of a text block, so no line of the data can pass for a line of the program's
own output.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable
from typing import Any

FORMULA_START = frozenset("=+-@\t\r")
GUTTER = "  │ "


def _needs_quote(s: str) -> bool:
    # the leading quotes we may have added, then what a spreadsheet would look at
    rest = s.lstrip("'")
    return bool(rest) and (rest[0] in FORMULA_START or rest.lstrip()[:1] in FORMULA_START)


def csv_cell(value: Any) -> Any:
    """`value` as a CSV cell for people: a string a spreadsheet would run as a formula gets a leading '.
    Other values (numbers, None, booleans) are returned as they are."""
    if isinstance(value, str) and _needs_quote(value):
        return "'" + value
    return value


def csv_uncell(value: str) -> str:
    """Undo `csv_cell` on a cell read back from a CSV we wrote."""
    if value.startswith("'") and _needs_quote(value[1:]):
        return value[1:]
    return value


def _table(*, keep: str) -> dict[int, str]:
    table: dict[int, str] = {}
    for cp in range(0x20):
        if chr(cp) not in keep:
            table[cp] = chr(0x2400 + cp)
    table[0x7F] = "\u2421"
    for cp in (*range(0x80, 0xA0), 0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)):
        table[cp] = f"<U+{cp:04X}>"
    table[0x2028] = "<U+2028>"
    table[0x2029] = "<U+2029>"
    return table


_BLOCK = _table(keep="\n\t")
_LINE = _table(keep="")


def visible(text: str) -> str:
    """`text` with every control character shown as a symbol, except newline and tab."""
    return text.translate(_BLOCK)


def visible_line(text: str) -> str:
    """`text` on one line, every control character (newline and tab too) shown as a symbol."""
    return text.translate(_LINE)


def quoted(text: str, *, width: int | None = None, gutter: str = GUTTER) -> str:
    """A block of data text for a terminal: control characters made visible (`visible`; a CR LF line
    end counts as one newline) and every line, wrapped to `width` when given, after `gutter`."""
    lines = visible(text.replace("\r\n", "\n")).split("\n")
    out: list[str] = []
    for line in lines:
        if width is None or not line.strip():
            out.append(gutter + line.expandtabs() if line.strip() else gutter.rstrip())
            continue
        out.extend(textwrap.wrap(line, max(10, width), initial_indent=gutter, subsequent_indent=gutter))
    return "\n".join(out)


_TOKENS = re.compile(r"(?i:bearer)\s+[^\s\"',;]+|sk-[A-Za-z0-9_-]{8,}")
REDACTED = "[redacted]"
_NO_KEY = "not-needed"  # what Endpoint.api_key() sends when the variable is unset: no secret


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without the given secrets (each at least 4 characters) and without anything shaped
    like a bearer token or an `sk-...` key. For server error texts (backends.translate_error) and for
    every answer the run store writes (RunStore.put_result: reason and raw)."""
    for secret in secrets:
        if secret and len(secret) >= 4 and secret != _NO_KEY:
            text = text.replace(secret, REDACTED)
    return _TOKENS.sub(lambda m: "Bearer " + REDACTED if m.group(0)[:1] in "bB" else REDACTED, text)
