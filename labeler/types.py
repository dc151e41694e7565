"""Data types that flow through the pipeline, in stage order.

TaskConfig (config.py) → Item (inputs.py) → Request (prompts.py) → Completion (backends.py)
→ Answer (parse.py) → ItemResult (runner.py) → rows in the run store (store.py).

All are frozen dataclasses; the item, not the request, is the unit of storage and caching.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

Status = Literal["labeled", "failed", "skipped"]


@dataclass(frozen=True)
class LabelDef:
    name: str
    description: str = ""


@dataclass(frozen=True)
class Example:
    text: str
    label: str


@dataclass(frozen=True)
class Item:
    """One input row. `row` is its 1-based position in the input file (for messages)."""

    id: str
    text: str
    row: int
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class Request:
    """One chat-completions request, as sent. Its cache key covers everything that shapes the answer."""

    model: str
    messages: tuple[Message, ...]
    max_tokens: int
    temperature: float = 0.0
    n: int = 1
    logprobs: bool = False
    top_logprobs: int = 0
    response_format: Mapping[str, Any] | None = None
    grammar: str | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def params(self) -> dict[str, Any]:
        """Sampling and format parameters (everything except model and messages), JSON-able."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("model", "messages")}
        d["stop"] = list(self.stop)
        return d

    def cache_key(self) -> str:
        payload = {
            "model": self.model,
            "messages": [[m.role, m.content] for m in self.messages],
            "params": self.params(),
        }
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Choice:
    text: str
    logprobs: tuple[TokenLogprob, ...] | None = None
    finish_reason: str | None = None


@dataclass(frozen=True)
class Completion:
    choices: tuple[Choice, ...]
    input_tokens: int = 0
    output_tokens: int = 0
    model: str = ""
    request_id: str | None = None

    def to_json(self) -> str:
        """The same JSON as json.dumps(asdict(self)), built without asdict's deep copy (a hot path)."""
        choices = [
            {
                "text": c.text,
                "logprobs": None
                if c.logprobs is None
                else [{"token": t.token, "logprob": t.logprob, "top": t.top} for t in c.logprobs],
                "finish_reason": c.finish_reason,
            }
            for c in self.choices
        ]
        d = {
            "choices": choices,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "model": self.model,
            "request_id": self.request_id,
        }
        return json.dumps(d, ensure_ascii=False)

    @classmethod
    def from_json(cls, blob: str) -> Completion:
        d = json.loads(blob)
        choices = tuple(
            Choice(
                text=c["text"],
                finish_reason=c.get("finish_reason"),
                logprobs=None
                if c.get("logprobs") is None
                else tuple(
                    TokenLogprob(t["token"], t["logprob"], tuple((a, b) for a, b in t["top"])) for t in c["logprobs"]
                ),
            )
            for c in d["choices"]
        )
        return cls(
            choices=choices,
            input_tokens=d.get("input_tokens", 0),
            output_tokens=d.get("output_tokens", 0),
            model=d.get("model", ""),
            request_id=d.get("request_id"),
        )


@dataclass(frozen=True)
class Answer:
    """What one choice of a completion says: a label from the set (or None) and what backs it."""

    label: str | None
    raw: str
    verbalized: float | None = None
    label_probs: Mapping[str, float] | None = None  # from token logprobs, renormalised over the label set
    error: str | None = None
    dropped: int = 0  # parts of the answer left out rather than invented (quoted spans not found in the text)


@dataclass(frozen=True)
class ItemResult:
    """The outcome for one item and one ensemble member. Written to the store as soon as it exists."""

    item_id: str
    member: str
    status: Status
    label: str | None = None
    confidence: float | None = None
    # method name ("logprob", "verbalized", "consistency") -> distribution over the label set
    distributions: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    reason: str | None = None
    raw: str | None = None
    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    attempts: int = 0
    cached: bool = False
    cache_key: str | None = None
    dropped: int = 0  # quoted spans of the answer not found in the item text (left out, counted)
