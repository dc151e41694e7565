"""In-process fakes for unit tests: a scripted Backend, completion builders, and a task on disk.

Nothing here opens a socket. `FakeBackend` implements `labeler.label.backends.Backend`; its answers come
from a script (a function of the Request), and it records every request it was sent.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labeler.config import TaskConfig
from labeler.inputs import read_rows
from labeler.label.pipeline import build_manifest
from labeler.store import RunStore
from labeler.types import Choice, Completion, Request, TokenLogprob

# What a script may return for one request: a Completion as is; a str (one choice with that text);
# a list of str (one choice each, for n > 1); or an exception, which `complete` raises.
Reply = Completion | str | Sequence[str] | BaseException
Script = Callable[[Request], Reply]

BASE_URL = "http://127.0.0.1:9/v1"  # never contacted: unit tests pass fake backends to the runner

TEMPLATE = """\
[[system]]
You label {{ task }} texts. Labels:
{% for lab in labels %}
- {{ lab.name }}: {{ lab.description }}
{% endfor %}
{% if answer == "json" %}
Answer with JSON: {"label": "<label>"{% if verbalized %}, "confidence": <0..1>{% endif %}}.
{% else %}
Answer with the label only.
{% endif %}
[[user]]
{{ text }}
"""


def completion(
    reply: str | Sequence[str],
    *,
    input_tokens: int = 100,
    output_tokens: int = 5,
    logprobs: Sequence[TokenLogprob] | None = None,
    finish_reason: str = "stop",
    model: str = "fake-model",
) -> Completion:
    texts = [reply] if isinstance(reply, str) else list(reply)
    lp = None if logprobs is None else tuple(logprobs)
    return Completion(
        choices=tuple(Choice(text=t, logprobs=lp, finish_reason=finish_reason) for t in texts),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        model=model,
    )


def tok(token: str, p: float, top: Mapping[str, float] | None = None) -> TokenLogprob:
    """A token with probability `p` and top alternatives given as probabilities (logged here)."""
    alts = tuple((t, math.log(q)) for t, q in (top or {token: p}).items())
    return TokenLogprob(token=token, logprob=math.log(p), top=alts)


def json_answer(label: str, confidence: float | None = None) -> str:
    d: dict[str, Any] = {"label": label}
    if confidence is not None:
        d["confidence"] = confidence
    return json.dumps(d)


@dataclass
class FakeBackend:
    script: Script
    requests: list[Request] = field(default_factory=list)
    closed: bool = False

    async def complete(self, request: Request) -> Completion:
        self.requests.append(request)
        reply = self.script(request)
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, Completion):
            return reply
        return completion(reply)

    async def aclose(self) -> None:
        self.closed = True

    @property
    def calls(self) -> int:
        return len(self.requests)


def in_order(*replies: Reply) -> Script:
    """A script that gives `replies` one per request, then repeats the last."""
    queue = list(replies)

    def script(request: Request) -> Reply:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return script


def user_text(request: Request) -> str:
    """The text of the first user message: the rendered item (templates end with {{ text }})."""
    return next(m.content for m in request.messages if m.role == "user")


def is_reask(request: Request) -> bool:
    return request.messages[-1].role == "user" and "not a valid answer" in request.messages[-1].content


_ITEM = re.compile(r"\bitem (\d+)\b")


def item_number(request: Request) -> int:
    """Synthetic corpora write `item <n>` into each text, so a script can answer per item."""
    m = _ITEM.search(user_text(request))
    assert m is not None, f"no item number in {user_text(request)!r}"
    return int(m.group(1))


# --- a task on disk ---------------------------------------------------------------------------------
def _toml_value(v: Any) -> str:
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(v)  # JSON strings, numbers and booleans are valid TOML


def toml_table(header: str, values: Mapping[str, Any]) -> str:
    return "\n".join([header, *(f"{k} = {_toml_value(v)}" for k, v in values.items())]) + "\n"


def write_task(
    root: Path,
    *,
    labels: Sequence[str] = ("business", "sport", "tech"),
    model: Mapping[str, Any] | None = None,
    sections: Mapping[str, Mapping[str, Any]] | None = None,
    members: Sequence[Mapping[str, Any]] = (),
    task: Mapping[str, Any] | None = None,
    template: str = TEMPLATE,
    input_path: str = "items.csv",
) -> Path:
    """Write prompt.j2 and task.toml under `root`; returns the config path. `model` overrides the
    [model] table (default: a non-local base_url so no server is started); `sections` adds tables
    (its "input" entry extends [input])."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "prompt.j2").write_text(template, encoding="utf-8")
    parts = [toml_table("[task]", {"name": "news", "template": "prompt.j2", **(task or {})})]
    for name in labels:
        parts.append(toml_table("[[labels]]", {"name": name, "description": f"texts about {name}"}))
    sections = dict(sections or {})
    parts.append(toml_table("[input]", {"path": input_path, **sections.pop("input", {})}))
    parts.append(toml_table("[model]", {"base_url": BASE_URL, "model": "test-model"} if model is None else model))
    for header, values in sections.items():
        parts.append(toml_table(f"[{header}]", values))
    for m in members:
        parts.append(toml_table("[[members]]", m))
    path = root / "task.toml"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def write_csv(path: Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    rows = list(rows)
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def open_run(task: TaskConfig, run_dir: Path, input_path: Path | None = None) -> RunStore:
    """A new run directory with the task's corpus ingested, as `labeler run` makes it."""
    path = input_path or task.input_path
    assert path is not None
    store = RunStore.create(run_dir, build_manifest(task, path, run_dir.name))
    store.ingest(
        read_rows(path, id_column=task.id_column, text_column=task.text_column, gold_column=task.gold_column),
        members=[m.name for m in task.members],
    )
    return store
