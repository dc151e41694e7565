"""Reading a model's answer: the label, a stated confidence, and label probabilities from logprobs.

Parsing is lenient (case, whitespace, quotes, a trailing full stop, JSON or bare text, an unambiguous
prefix such as "pos" for "positive") but never guesses between labels: an ambiguous or out-of-set
answer is an error that the runner re-asks once and otherwise records with the raw text.

With answer words (a verbalizer: several words may mean one label), the answer is read as a word and
mapped to its label, and the logprob distribution over the words is summed per label
(`sum_by_label`): p(label) = sum of p(word) over the label's words.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence

from labeler.types import Answer, Choice, TokenLogprob

_STRIP = " \t\r\n\"'`.,;:!*"
_JSON_OBJ = re.compile(r"\{.*\}", re.DOTALL)
_LABEL_KEY = re.compile(r'"label"\s*:\s*"')
_LABEL_PAIR = re.compile(r'"(?:label|answer|category|class)"\s*:\s*"([^"]*)"')  # in JSON cut off by max_tokens


def match_label(text: str, labels: Sequence[str]) -> str | None:
    """The one label `text` names, or None if it names none or several."""
    t = text.strip(_STRIP).lower()
    t = re.sub(r"^(label|answer|category|class)\s*[:=-]\s*", "", t).strip(_STRIP)
    if not t:
        return None
    lower = {lab.lower(): lab for lab in labels}
    if t in lower:
        return lower[t]
    # "sport news" -> sport: the answer starts with exactly one label followed by a word boundary,
    # and names no other label after it ("positive or negative" names two: no answer)
    starts = [lab for low, lab in lower.items() if re.match(re.escape(low) + r"\b", t)]
    if len(starts) == 1:
        rest = t[len(starts[0]) :]
        if any(re.search(r"\b" + re.escape(low) + r"\b", rest) for low in lower):
            return None
        return starts[0]
    # "pos" -> positive: the answer is a prefix of exactly one label
    prefix_of = [lab for low, lab in lower.items() if low.startswith(t)]
    if len(prefix_of) == 1:
        return prefix_of[0]
    return None


def _as_confidence(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        x = float(value)
    except ValueError:
        return None
    if 1.0 < x <= 100.0 and x == int(x):  # "80" means 80%; 1.5 is no probability and no percentage
        x /= 100.0
    return x if 0.0 <= x <= 1.0 else None


def parse_text(raw: str, labels: Sequence[str]) -> tuple[str | None, float | None, str | None]:
    """(label, verbalized confidence, error) from an answer's text, JSON or bare."""
    m = _JSON_OBJ.search(raw)
    if m:
        try:
            obj = json.loads(m.group(0))
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            value = next((obj[k] for k in ("label", "answer", "category", "class") if k in obj), None)
            if value is None:
                return None, None, "JSON answer has no label field"
            label = match_label(str(value), labels)
            conf = _as_confidence(obj.get("confidence"))
            if label is None:
                return None, conf, f"label {str(value)[:60]!r} is not in the label set"
            return label, conf, None
    pair = _LABEL_PAIR.search(raw)
    label = match_label(pair.group(1) if pair else raw, labels)
    if label is None:
        snippet = " ".join(raw.split())[:60]
        return None, None, f"answer {snippet!r} is not one of the labels" if snippet else "empty answer"
    return label, None, None


def _value_start(tokens: Sequence[TokenLogprob]) -> tuple[int, str] | None:
    """For a JSON answer: the index of the token where the label value starts, and the part of that
    token that lies before the value (to strip from its alternatives)."""
    text = ""
    spans = []
    for t in tokens:
        spans.append(len(text))
        text += t.token
    m = _LABEL_KEY.search(text)
    if not m:
        return None
    start = m.end()
    for i in range(len(tokens)):
        end = spans[i] + len(tokens[i].token)
        if spans[i] <= start < end:
            return i, text[spans[i] : start]
    return None


def label_probs(
    tokens: Sequence[TokenLogprob] | None, labels: Sequence[str], *, json_answer: bool
) -> dict[str, float] | None:
    """Probability of each label from the top_logprobs at the position where the label starts,
    renormalised over the label set. Labels sharing a first token are split by walking the realised
    path further. None when the logprobs say nothing about any label."""
    if not tokens:
        return None
    if json_answer:
        found = _value_start(tokens)
        if found is None:
            return None
        pos, before = found
    else:  # a bare label, perhaps after a whitespace token (grammars allow one space before it)
        pos = next((i for i, t in enumerate(tokens) if t.token.strip()), len(tokens))
        if pos == len(tokens):
            return None
        before = ""
    lower = {lab.lower(): lab for lab in labels}

    def dist(i: int, prefix: str, cands: list[str], strip_before: str) -> dict[str, float]:
        masses: dict[str, float] = defaultdict(float)
        tok = tokens[i]
        alts = tok.top or ((tok.token, tok.logprob),)
        for alt, lp in alts:
            if strip_before:
                if not alt.startswith(strip_before):
                    continue
                alt = alt[len(strip_before) :]
            piece = alt.lower()
            if i == pos and not json_answer:
                piece = piece.lstrip(" \"'")
            s = prefix + piece
            trimmed = s.rstrip(" \"'}.,\n")
            matches = [c for c in cands if c.startswith(s) or (trimmed == c)]
            if not matches or not s:
                continue
            p = math.exp(lp)
            if len(matches) == 1:
                masses[matches[0]] += p
            elif alt == tok.token[len(strip_before) :] and i + 1 < len(tokens):  # realised: walk on
                sub = dist(i + 1, s, matches, "")
                total = sum(sub.values())
                for c in matches:
                    masses[c] += p * (sub.get(c, 0.0) / total if total > 0 else 1.0 / len(matches))
            else:
                for c in matches:
                    masses[c] += p / len(matches)
        return masses

    masses = dist(pos, "", list(lower), before)
    total = sum(masses.values())
    if total <= 0:
        return None
    return {lab: masses.get(lab.lower(), 0.0) / total for lab in labels}


def sum_by_label(
    word_probs: Mapping[str, float], answers: Sequence[tuple[str, str]], labels: Sequence[str]
) -> dict[str, float]:
    """Per label, the summed probability of its answer words (`answers`: (word, label) pairs)."""
    out = dict.fromkeys(labels, 0.0)
    for word, label in answers:
        out[label] += float(word_probs.get(word, 0.0))
    return out


class Vocabulary:
    """What an answer may say and what each answer means: the answer words and any label's own name that no
    word spells (`readable`), each mapped to its label (`label_of`, ignoring case). Without answer words it
    is the label names themselves."""

    def __init__(self, labels: Sequence[str], answers: Sequence[tuple[str, str]] = ()) -> None:
        self.meaning = {w.lower(): lab for w, lab in answers}
        unspelled = (lab for lab in labels if lab.lower() not in self.meaning)
        self.readable: tuple[str, ...] = (*(w for w, _ in answers), *unspelled) if answers else tuple(labels)

    def label_of(self, word: str | None) -> str | None:
        return None if word is None else self.meaning.get(word.lower(), word)


def parse_choice(
    choice: Choice, labels: Sequence[str], *, json_answer: bool, answers: Sequence[tuple[str, str]] = ()
) -> Answer:
    """The label (and its confidences) in one choice. With `answers` ((word, label) pairs) the model answers
    words: a word — or a label's own name, when no word spells it — is mapped to its label."""
    if not answers:
        label, verbalized, error = parse_text(choice.text, labels)
        probs = label_probs(choice.logprobs, labels, json_answer=json_answer) if label is not None else None
        return Answer(label=label, raw=choice.text, verbalized=verbalized, label_probs=probs, error=error)
    vocab = Vocabulary(labels, answers)
    word, verbalized, error = parse_text(choice.text, vocab.readable)
    label = vocab.label_of(word)
    probs = None
    if label is not None:
        word_probs = label_probs(choice.logprobs, [w for w, _ in answers], json_answer=json_answer)
        probs = None if word_probs is None else sum_by_label(word_probs, answers, labels)
    return Answer(label=label, raw=choice.text, verbalized=verbalized, label_probs=probs, error=error)
