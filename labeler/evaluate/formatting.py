"""Numbers as the report writes them: '84.2% (81.0–87.3%)', '0.71 (0.65–0.77)', 'n/a' when undefined."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def ok(x: Any) -> bool:
    """A finite number (None, NaN and inf are not)."""
    return isinstance(x, int | float) and math.isfinite(x)


def pct(x: Any, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%" if ok(x) else "n/a"


def num(x: Any, digits: int = 2) -> str:
    return f"{x:.{digits}f}" if ok(x) else "n/a"


def money(x: Any, digits: int = 2) -> str:
    return f"${x:.{digits}f}" if ok(x) else "n/a"


def ci(e: Mapping[str, Any], *, as_pct: bool = True, digits: int | None = None) -> str:
    """'81.0–87.3%' or '0.65–0.77'; '?' for an end that is undefined."""
    d = (1 if as_pct else 2) if digits is None else digits
    scale = 100 if as_pct else 1
    ends = [scale * e[k] if ok(e.get(k)) else None for k in ("low", "high")]
    lo, hi = (num(x, d).replace("-", "−") if x is not None else "?" for x in ends)
    sep = " to " if any(x is not None and x < 0 for x in ends) else "–"
    return f"{lo}{sep}{hi}" + ("%" if as_pct else "")


def est(e: Mapping[str, Any] | None, *, as_pct: bool = True, digits: int | None = None) -> str:
    """'84.2% (81.0–87.3%)' or '0.71 (0.65–0.77)'; 'n/a' when undefined."""
    if not e or not ok(e.get("value")):
        return "n/a"
    d = (1 if as_pct else 2) if digits is None else digits
    value = (pct(e["value"], d) if as_pct else num(e["value"], d)).replace("-", "−")
    return f"{value} ({ci(e, as_pct=as_pct, digits=d)})"


def excludes(e: Mapping[str, Any], x: float) -> bool:
    """The interval of e is defined and does not hold x."""
    return ok(e.get("low")) and ok(e.get("high")) and (e["low"] > x or e["high"] < x)


def short(text: str, n: int = 120) -> str:
    """Whitespace collapsed, cut to n characters with an ellipsis."""
    t = " ".join(str(text).split())
    return t if len(t) <= n else t[: n - 1] + "…"
