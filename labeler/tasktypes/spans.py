"""spans: typed character spans of the item text (named entities, quoted claims, ...).

The model answers JSON, `{"spans": [{"text": "Ada Lovelace", "type": "PER"}, ...]}`, quoting each span (a
`{"start", "end", "type"}` answer is read too). A quoted span is aligned to character offsets in the item
text: first an exact match, then one tolerant of whitespace and case; repeated quotes of one string take its
successive occurrences. A quote that cannot be found is dropped and counted (`Parsed.dropped`), never
invented. Offsets are Python string indices into the original text — code points, `text[start:end]` is the
span — whatever its line endings or non-ASCII characters; `utf16_offsets` converts them for tools that count
UTF-16 code units (browsers, Label Studio).

Evaluation is SemEval-2013's (exact, partial-overlap, type and strict match), computed by `nervaluate`
(a maintained library of the field) item by item, so the counts can be bootstrapped over items: correct,
type errors (right boundaries, wrong type), boundary errors (overlap, right type), missed and spurious spans,
per entity type.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from labeler.tasktypes import Parsed

_OBJ = re.compile(r"\{.*\}", re.DOTALL)


@dataclass(frozen=True, order=True)
class Span:
    start: int
    end: int  # exclusive: text[start:end]
    type: str
    text: str = ""


def utf16_offsets(text: str, start: int, end: int) -> tuple[int, int]:
    """(start, end) in UTF-16 code units, as JavaScript and Label Studio count them."""

    def units(s: str) -> int:
        return len(s.encode("utf-16-le")) // 2

    return units(text[:start]), units(text[:start]) + units(text[start:end])


def _occurrences(text: str, quote: str) -> list[tuple[int, int]]:
    """Every (start, end) of `quote` in `text`: the exact matches, then the whitespace- and case-tolerant ones
    that are whole words (quoted 'EU' is not the 'Eu' of 'European', nor 'un' that of 'union')."""
    q = quote.strip()
    if not q:
        return []
    exact, i = [], text.find(q)
    while i >= 0:
        exact.append((i, i + len(q)))
        i = text.find(q, i + 1)
    pattern = re.compile(r"\s+".join(re.escape(w) for w in q.split()), re.IGNORECASE)
    tolerant = [(m.start(), m.end()) for m in pattern.finditer(text)]
    return exact + [at for at in tolerant if at not in exact and _whole(text, at)]


def _whole(text: str, at: tuple[int, int]) -> bool:
    """True when the match neither starts nor ends inside a word ('Israel' in 'Israeli' does not)."""
    a, b = at
    return not (a > 0 and text[a - 1].isalnum() and text[a].isalnum()) and not (
        b < len(text) and text[b].isalnum() and text[b - 1].isalnum())


def _find(text: str, quote: str, taken: Sequence[tuple[int, int]]) -> tuple[int, int] | None:
    """The occurrence of `quote` to place: one that overlaps no span placed yet, whole words first; else
    (the quote occurs only inside placed spans) one not placed already, which the overlap check then judges."""
    found = [at for at in _occurrences(text, quote) if at not in taken]
    free = [at for at in found if all(at[1] <= s or at[0] >= e for s, e in taken)]
    for group in (free, found):
        if group:
            return next((at for at in group if _whole(text, at)), group[0])
    return None


def align(text: str, quoted: Sequence[tuple[str, str]]) -> tuple[tuple[Span, ...], int]:
    """Quoted (span text, type) pairs -> spans at their offsets in `text`, and how many were not found.
    Longer quotes are placed first, so a name inside a longer one ('Milan' in 'AC Milan') takes another
    occurrence instead of the longer name's; repeated quotes of one string take successive occurrences."""
    taken: list[tuple[int, int]] = []
    spans, dropped = [], 0
    for quote, kind in sorted(quoted, key=lambda qk: -len(qk[0].strip())):
        at = _find(text, quote, taken)
        if at is None:
            dropped += 1
            continue
        taken.append(at)
        spans.append(Span(at[0], at[1], kind, text[at[0] : at[1]]))
    return tuple(sorted(spans)), dropped


def overlapping(spans: Sequence[Span]) -> tuple[Span, Span] | None:
    """The first pair of spans (sorted by start) that share a character, if any."""
    ordered = sorted(spans)
    for a, b in itertools.pairwise(ordered):
        if b.start < a.end:
            return a, b
    return None


@dataclass(frozen=True)
class Spans:
    types: tuple[str, ...]
    allow_overlap: bool = False
    name: str = "spans"
    elementwise: bool = True

    def response_format(self, words: Sequence[str]) -> dict[str, Any]:
        span = {"type": "object", "properties": {"text": {"type": "string"}, "type": {"type": "string",
                "enum": list(words)}}, "required": ["text", "type"], "additionalProperties": False}
        schema = {"type": "object", "properties": {"spans": {"type": "array", "items": span}},
                  "required": ["spans"], "additionalProperties": False}
        return {"type": "json_schema", "json_schema": {"name": "spans_answer", "strict": True, "schema": schema}}

    def grammar(self, words: Sequence[str]) -> str:
        alts = " | ".join(json.dumps(json.dumps(w)) for w in words)
        return (
            'root ::= "{\\"spans\\": [" (span ("," " "? span)*)? "]}"\n'
            'span ::= "{\\"text\\": " str ", \\"type\\": " type "}"\n'
            f"type ::= {alts}\n"
            'str ::= "\\"" ([^"\\\\\\x00-\\x1f] | "\\\\" ["\\\\/bfnrt])* "\\""\n'
        )

    def parse(self, raw: str, text: str) -> Parsed:
        m = _OBJ.search(raw)
        try:
            obj = json.loads(m.group(0)) if m else None
        except json.JSONDecodeError:
            obj = None
        items = obj.get("spans") if isinstance(obj, dict) else None
        if not isinstance(items, list) or not all(isinstance(s, dict) for s in items):
            return Parsed(None, "answer is not a JSON object with a spans list")
        lower = {t.lower(): t for t in self.types}
        quoted: list[tuple[str, str]] = []
        placed: list[Span] = []
        for s in items:
            kind = lower.get(str(s.get("type", "")).lower())
            if kind is None:
                return Parsed(None, f"span type {str(s.get('type'))[:40]!r} is not one of {', '.join(self.types)}")
            if "start" in s and "end" in s:
                start, end = s["start"], s["end"]
                if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)):
                    return Parsed(None, f"span {start!r}-{end!r} lies outside the text (0-{len(text)})")
                placed.append(Span(start, end, kind, text[start:end]))
            else:
                quoted.append((str(s.get("text", "")), kind))
        aligned, dropped = align(text, quoted)
        spans = tuple(sorted({*placed, *aligned}))
        clash = None if self.allow_overlap else overlapping(spans)
        if clash:
            a, b = clash
            return Parsed(None, f"spans {a.text[:30]!r} and {b.text[:30]!r} overlap; the task forbids overlapping "
                                "spans", dropped)
        return Parsed(spans, None, dropped)

    def encode(self, value: Any) -> str | None:
        if value is None:
            return None
        return json.dumps([{"start": s.start, "end": s.end, "type": s.type, "text": s.text} for s in value],
                          ensure_ascii=False)

    def decode(self, stored: str | None) -> Any:
        if stored is None:
            return None
        try:
            items = json.loads(stored)
            return tuple(sorted(Span(int(d["start"]), int(d["end"]), str(d["type"]), str(d.get("text", "")))
                                for d in items))
        except (json.JSONDecodeError, TypeError, KeyError, ValueError):
            raise ValueError(f"stored spans {stored[:60]!r} are not a JSON list of start/end/type objects") from None

    def elements(self, value: Any) -> tuple[str, ...]:
        return tuple(f"span {s.start}-{s.end} {s.type} {s.text[:40]!r}" for s in value or ())

    def agreement(self, a: Any, b: Any) -> float:
        """F1 of exact (offsets and type) matches between the two span sets (two empty sets agree)."""
        sa, sb = {(s.start, s.end, s.type) for s in a or ()}, {(s.start, s.end, s.type) for s in b or ()}
        return 1.0 if not sa | sb else 2 * len(sa & sb) / (len(sa) + len(sb))

    def evaluate(self, truth: Sequence[Any], pred: Sequence[Any], *, n_boot: int, seed: int) -> dict[str, Any]:
        from labeler.tasktypes.span_scores import evaluate_spans

        return evaluate_spans(truth, pred, self.types, n_boot=n_boot, seed=seed)
