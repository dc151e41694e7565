"""The study report as a list of blocks (heading, paragraph, list, table, image), rendered twice: to Markdown,
and to one self-contained HTML page with the PNGs inlined as base64, in the evaluation report's look."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from labeler.evaluate.formatting import est

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;
line-height:1.45}table{border-collapse:collapse;margin:.5em 0 1em}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:.85em;text-align:left}
th{background:#f1f1f1}img{max-width:100%}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
.summary{background:#f6f8fa;border-left:4px solid #2e6da4;padding:.6em 1em}"""


def ok(x: Any) -> bool:
    """A finite number (None, NaN and inf are not)."""
    return isinstance(x, int | float) and math.isfinite(x)


def f1(e: Mapping[str, Any] | None) -> str:
    """'0.71 (0.65–0.77)' for an estimate dict; 'n/a' when undefined."""
    return est(e, as_pct=False)


def money(x: Any) -> str:
    """'$6.05', '$0.12'; four decimals when cents would hide the amount ('$0.0525'); '—' when undefined."""
    if not ok(x):
        return "—"
    return f"${x:,.2f}" if x >= 1 or abs(round(x, 2) - x) < 1e-9 else f"${x:.4f}"


@dataclass(frozen=True)
class Block:
    kind: str  # "h1", "h2", "h3", "p", "summary", "list", "table", "img"
    text: str = ""
    rows: tuple[tuple[str, ...], ...] = ()  # table: header first; list: one item per row


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Block:
    return Block("table", rows=(tuple(header), *(tuple(str(c) for c in r) for r in rows)))


def bullets(items: Sequence[str]) -> Block:
    return Block("list", rows=tuple((i,) for i in items))


def render_md(blocks: Sequence[Block]) -> str:
    out = []
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            out.append("#" * int(b.kind[1]) + " " + b.text)
        elif b.kind in ("p", "summary"):
            out.append(b.text)
        elif b.kind == "list":
            out.append("\n".join(f"- {r[0]}" for r in b.rows))
        elif b.kind == "img":
            out.append(f"![{b.text}]({b.text})")
        elif b.kind == "table":
            esc = [[c.replace("|", "\\|").replace("\n", " ") for c in r] for r in b.rows]
            out.append("| " + " | ".join(esc[0]) + " |")
            out.append("|" + "---|" * len(esc[0]))
            out.extend("| " + " | ".join(r) + " |" for r in esc[1:])
        out.append("")
    return "\n".join(out)


def render_html(blocks: Sequence[Block], images: Mapping[str, bytes], title: str) -> str:
    out = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{CSS}</style></head><body>",
    ]
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            out.append(f"<{b.kind}>{html.escape(b.text)}</{b.kind}>")
        elif b.kind == "p":
            out.append(f"<p>{html.escape(b.text)}</p>")
        elif b.kind == "summary":
            out.append(f"<p class='summary'>{html.escape(b.text)}</p>")
        elif b.kind == "list":
            out.append("<ul>" + "".join(f"<li>{html.escape(r[0])}</li>" for r in b.rows) + "</ul>")
        elif b.kind == "img":
            data = base64.b64encode(images[b.text]).decode("ascii")
            out.append(f"<p><img alt='{html.escape(b.text)}' src='data:image/png;base64,{data}'></p>")
        elif b.kind == "table":
            head = "".join(f"<th>{html.escape(c)}</th>" for c in b.rows[0])
            body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in b.rows[1:])
            out.append(f"<table><tr>{head}</tr>{body}</table>")
    out.append("</body></html>")
    return "\n".join(out)
