"""spans: typed character spans of the item text (named entities, quoted claims, ...).

The model answers JSON, `{"spans": [{"text": "Ada Lovelace", "type": "PER"}, ...]}`, quoting each span (a
`{"start", "end", "type"}` answer is read too). A quoted span is aligned to character offsets in the item
text: first an exact match, then one tolerant of whitespace and case; repeated quotes of one string take its
successive occurrences. A quote that cannot be found is dropped and counted (`Parsed.dropped`), never
invented; so is the span an answer was cut off in (out of output tokens: its complete spans are kept, by
`salvage`); so is, where the task forbids overlap, a quote found only inside another span of the answer ("York"
LOC beside "New York" LOC in "New York"), while spans the answer states by offsets are kept as stated and an
overlap among them is an error. `Spans.check` words every rule an annotation must meet (the review import
uses it too). Offsets are Python string indices into the original text — code points, `text[start:end]` is the
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

from labeler.tasktypes import Parsed, one_of

_OBJ = re.compile(r"\{.*\}", re.DOTALL)
_LIST = re.compile(r'\{\s*"spans"\s*:\s*\[')


def salvage(raw: str) -> list[Any] | None:
    """The complete elements of an answer cut off inside its spans list (a model that ran out of output tokens,
    typically repeating itself), the cut-off one left out; None when the answer has no spans list, or when
    nothing of it is complete."""
    m = _LIST.search(raw)
    if m is None:
        return None
    decoder, at, out = json.JSONDecoder(), m.end(), []
    while True:
        while at < len(raw) and raw[at] in " \t\r\n,":
            at += 1
        try:
            obj, at = decoder.raw_decode(raw, at)
        except json.JSONDecodeError:
            break
        out.append(obj)
    return out or None


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


def _find(text: str, quote: str, taken: Sequence[tuple[int, int]], *, drop_inside: bool) -> tuple[int, int] | None:
    """The occurrence of `quote` to place: one that overlaps no span placed yet, whole words first; else one
    not placed already, which the overlap check then judges, leaving out with `drop_inside` the occurrences
    that lie inside a placed span (a quote found only there is not placed at all)."""
    found = [at for at in _occurrences(text, quote) if at not in taken]
    free = [at for at in found if all(at[1] <= s or at[0] >= e for s, e in taken)]
    if drop_inside:
        found = [at for at in found if not any(s <= at[0] and at[1] <= e for s, e in taken)]
    for group in (free, found):
        if group:
            return next((at for at in group if _whole(text, at)), group[0])
    return None


def align(
    text: str,
    quoted: Sequence[tuple[str, str]],
    *,
    taken: Sequence[tuple[int, int]] = (),
    drop_inside: bool = False,
) -> tuple[tuple[Span, ...], int]:
    """Quoted (span text, type) pairs -> spans at their offsets in `text`, and how many were not placed.
    Longer quotes are placed first, so a name inside a longer one ('Milan' in 'AC Milan') takes another
    occurrence instead of the longer name's; repeated quotes of one string take successive occurrences.
    `taken`: (start, end) of spans placed already (stated by offsets). With `drop_inside`, a quote that occurs
    only inside spans placed already is not placed but counted ('York' of 'New York' when the task forbids
    overlap); without, it is placed there, for the overlap check to judge (as is, always, a quote whose only
    free occurrence crosses a placed span's edge: a genuine overlap)."""
    placed: list[tuple[int, int]] = list(taken)
    spans, dropped = [], 0
    for quote, kind in sorted(quoted, key=lambda qk: -len(qk[0].strip())):
        at = _find(text, quote, placed, drop_inside=drop_inside)
        if at is None:
            dropped += 1
            continue
        placed.append(at)
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

    def canonical_type(self, name: Any) -> str:
        """An entity type as the set spells it (matched case-insensitively); one outside it stays as given."""
        given = str(name if name is not None else "")
        return next((t for t in self.types if t.lower() == given.strip().lower()), given)

    def check(self, value: Any, text: str) -> str | None:
        spans: Sequence[Span] = value
        seen: set[Span] = set()
        for s in spans:
            if s.type not in self.types:
                return f"span type {s.type[:40]!r} is not one of: {one_of(self.types)}"
            if any(isinstance(x, bool) or not isinstance(x, int) for x in (s.start, s.end)):
                return f"span offsets {s.start!r}-{s.end!r} are not whole numbers"
            if not 0 <= s.start < s.end <= len(text):
                return f"span {s.start}-{s.end} lies outside the text (0-{len(text)})"
            here = text[s.start : s.end]
            if s.text and s.text != here:
                return f"span {s.start}-{s.end} quotes {s.text[:40]!r} but the text there is {here[:40]!r}"
            key = Span(s.start, s.end, s.type)
            if key in seen:
                return f"span {s.start}-{s.end} {s.type} {here[:30]!r} is named twice; give each span once"
            seen.add(key)
        clash = None if self.allow_overlap else overlapping(spans)
        if clash:
            a, b = clash
            return (f"spans {a.start}-{a.end} {text[a.start : a.end][:30]!r} and {b.start}-{b.end} "
                    f"{text[b.start : b.end][:30]!r} overlap; the task forbids overlapping spans (task.allow_overlap)")
        return None

    def parse(self, raw: str, text: str) -> Parsed:
        """Spans stated by offsets are kept as stated (one stated twice counts once) and checked; quoted ones
        are aligned around them, and where the task forbids overlap a quote found only inside another span is
        dropped and counted rather than failing the answer."""
        m = _OBJ.search(raw)
        try:
            obj = json.loads(m.group(0)) if m else None
        except json.JSONDecodeError:
            obj = None
        items = obj.get("spans") if isinstance(obj, dict) else None
        cut = 0
        if obj is None and (items := salvage(raw)) is not None:
            cut = 1  # the span the answer was cut off in counts as dropped: the item goes to humans (dropped_spans)
        if not isinstance(items, list) or not all(isinstance(s, dict) for s in items):
            return Parsed(None, "answer is not a JSON object with a spans list")
        quoted: list[tuple[str, str]] = []
        placed: dict[Span, None] = {}
        for s in items:
            kind = self.canonical_type(s.get("type"))
            if "start" in s and "end" in s:
                start, end = s["start"], s["end"]
                if any(isinstance(x, bool) or not isinstance(x, int) for x in (start, end)):
                    return Parsed(None, self.check([Span(start, end, kind)], text))
                placed[Span(start, end, kind, text[start:end] if 0 <= start < end else "")] = None
            elif kind not in self.types:
                return Parsed(None, self.check([Span(0, 0, kind)], text))
            else:
                quoted.append((str(s.get("text", "")), kind))
        stated = list(placed)
        error = self.check(stated, text)
        if error:
            return Parsed(None, error)
        aligned, dropped = align(text, quoted, taken=[(s.start, s.end) for s in stated],
                                 drop_inside=not self.allow_overlap)
        spans = tuple(sorted({*stated, *aligned}))
        error = self.check(spans, text)
        return Parsed(None, error, dropped + cut) if error else Parsed(spans, None, dropped + cut)

    def calibration_group(self, element: str) -> str:
        """'span 4-12 PER 'Lovelace'' -> 'type PER' (the longest type the element names, as types may hold spaces)."""
        head, _, rest = element.partition(" ")
        _, _, rest = rest.partition(" ")
        if head != "span":
            return element
        found = [t for t in self.types if rest.startswith(t + " ")]
        return f"type {max(found, key=len)}" if found else element

    def calibration_groups(self) -> tuple[str, ...]:
        return tuple(f"type {t}" for t in self.types)

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
