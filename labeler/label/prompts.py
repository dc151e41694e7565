"""Guidelines as prompts: Jinja2 templates in prompts/ rendered into chat requests.

Templates run in a sandboxed environment where an undefined variable is an error. A template renders
to text; lines `[[system]]`, `[[user]]` and `[[assistant]]` start messages (few-shot turns can be
written as user/assistant pairs). A template without markers is one user message: a completion-style
prompt for a base model, sent to a server whose chat template only concatenates contents.

Only markers written in the template source start messages. They are swapped for a per-process
random sentinel before compiling, and the rendered text is split on the sentinel alone, so a
`[[user]]` line inside a variable (an item's text, an example, a label description, the
instructions) stays plain text in its message and cannot open a new turn.

Variables: task (name), instructions, labels (name, description), label_names, examples (text,
label, name), text, answer ("json" or "label"), verbalized (bool: ask for a confidence in the JSON),
answer_words (what the model may answer: the label names, or the task's answer words), task_type
("single", "multi_label" or "spans"), min_labels, max_labels (None: no bound), allow_overlap; for spans
`labels` are the entity types with their descriptions.

Answer words (`[task] answers`, a verbalizer): the grammar or JSON enum offers the words, an example's
`label` renders as its label's first word (`name` keeps the label), and the answer's word maps back to
its label (labeler.label.parse). Few-shot examples come from labeler.label.examples: the same for every
item (fixed, balanced) or chosen per item (knn, mmr — which defeats a server's shared-prefix cache).
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from labeler.config import Member, TaskConfig
from labeler.errors import TemplateError
from labeler.label.constraints import json_schema, label_grammar
from labeler.label.examples import Selector, build_selector
from labeler.label.parse import parse_choice
from labeler.label.profiles import ModelProfile, profile_for
from labeler.tasktypes import TaskType
from labeler.tasktypes.registry import for_task
from labeler.types import Answer, Choice, Example, Message, Request

_ROLES = "system|user|assistant"
_MARKER = re.compile(rf"^\[\[({_ROLES})\]\]\s*$", re.MULTILINE)
_SOURCE_MARKER = re.compile(rf"\[\[({_ROLES})\]\]")
# What a source marker becomes before compiling: no variable's value can contain it (the nonce is
# random per process and never leaves it), so splitting on it splits on the template's markers only.
_SENTINEL = f"\ue000{secrets.token_hex(12)}:"
_SENTINEL_ANY = re.compile(rf"{_SENTINEL}({_ROLES})\ue001")
_SENTINEL_LINE = re.compile(rf"^{_SENTINEL}({_ROLES})\ue001\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Template:
    path: Path
    source: str
    compiled: jinja2.Template

    @property
    def hash(self) -> str:
        return template_hash(self.source)


def template_hash(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


_ENV = ImmutableSandboxedEnvironment(
    undefined=jinja2.StrictUndefined, keep_trailing_newline=False, trim_blocks=True, lstrip_blocks=True
)


def load_template(path: Path) -> Template:
    """Read the template from disk (every call: an edited file is never served stale) and compile it."""
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"cannot read template {path}: {exc.strerror}; fix task.template") from None
    return _compile(path, source)


@functools.lru_cache(maxsize=32)
def _compile(path: Path, source: str) -> Template:
    try:
        compiled = _ENV.from_string(_SOURCE_MARKER.sub(lambda m: f"{_SENTINEL}{m.group(1)}\ue001", source))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{path.name} line {exc.lineno}: {exc.message}; fix the template") from None
    return Template(path=path, source=source, compiled=compiled)


def split_messages(rendered: str, *, marker: re.Pattern[str] = _MARKER) -> tuple[Message, ...]:
    """Messages from text whose lines `marker` (by default a `[[role]]` line) start them."""
    parts = marker.split(rendered)
    if len(parts) == 1:
        return (Message("user", rendered.strip()),)
    if parts[0].strip():
        raise TemplateError("text before the first [[role]] marker; start the template with [[system]] or [[user]]")
    msgs = []
    for role, content in zip(parts[1::2], parts[2::2], strict=True):
        msgs.append(Message(role, content.strip()))  # type: ignore[arg-type]
    return tuple(msgs)


def _split_rendered(rendered: str) -> tuple[Message, ...]:
    """Split on the template's own markers (sentinels); one that is not alone on its line is text again."""
    msgs = split_messages(rendered, marker=_SENTINEL_LINE)
    if not any(_SENTINEL in m.content for m in msgs):
        return msgs
    return tuple(Message(m.role, _SENTINEL_ANY.sub(r"[[\1]]", m.content)) for m in msgs)


def answer_format(task: TaskConfig, profile: ModelProfile) -> str:
    if task.kind.elementwise:  # a label set or a span list is always a JSON answer
        return "json"
    return "json" if "verbalized" in task.confidence.methods else profile.answer


def answer_words(task: TaskConfig) -> tuple[str, ...]:
    """What the model may answer: the answer words of `[task] answers`, else the label names."""
    return tuple(w for w, _ in task.quality.answers) or task.label_names


def example_vars(task: TaskConfig, examples: tuple[Example, ...]) -> list[dict[str, str]]:
    """Examples as template variables: `label` is what the model should answer (the label's first answer
    word), `name` the label itself."""
    first: dict[str, str] = {}
    for word, label in task.quality.answers:
        first.setdefault(label, word)
    return [{"text": e.text, "label": first.get(e.label, e.label), "name": e.label} for e in examples]


def template_vars(
    task: TaskConfig, profile: ModelProfile, text: str, *, examples: tuple[Example, ...] | None = None
) -> dict[str, Any]:
    return {
        "task": task.name,
        "instructions": task.instructions,
        "labels": [{"name": lab.name, "description": lab.description} for lab in task.labels],
        "label_names": list(task.label_names),
        "examples": example_vars(task, task.examples if examples is None else examples),
        "text": text,
        "answer": answer_format(task, profile),
        "verbalized": "verbalized" in task.confidence.methods,
        "answer_words": list(answer_words(task)),
        # the task type (issue 19): single, multi_label (how many labels may apply) or spans (entity types = labels)
        "task_type": task.kind.type,
        "min_labels": task.kind.min_labels,
        "max_labels": task.kind.max_labels,
        "allow_overlap": task.kind.allow_overlap,
    }


def render(template: Template, variables: dict[str, Any]) -> tuple[Message, ...]:
    try:
        rendered = template.compiled.render(**variables)
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"{template.path.name}: {exc.message}; use only: {', '.join(sorted(variables))}") from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{template.path.name}: {exc}; fix the template") from None
    except Exception as exc:  # Python errors raised inside an expression, e.g. {{ 1 / 0 }} or {{ "x" + 1 }}
        raise TemplateError(f"{template.path.name}: {type(exc).__name__}: {exc}; fix the template") from None
    return _split_rendered(rendered)


@dataclass(frozen=True)
class RequestBuilder:
    """Turns an item's text into the Request for one member. Built once per member per run."""

    task: TaskConfig
    member: Member
    template: Template
    profile: ModelProfile

    @classmethod
    def for_member(cls, task: TaskConfig, member: Member) -> RequestBuilder:
        profile = profile_for(member.endpoint)
        path = member.template
        if profile.prompt_style == "completion" and member.completion_template is not None:
            path = member.completion_template
        return cls(task, member, load_template(path), profile)

    # What is the same for every item is worked out once per builder, not once per request.
    @functools.cached_property
    def selector(self) -> Selector:
        return build_selector(self.task)

    @functools.cached_property
    def _fixed_vars(self) -> dict[str, Any]:
        return template_vars(self.task, self.profile, "", examples=self.selector.fixed())

    @property
    def answers(self) -> tuple[tuple[str, str], ...]:
        """(answer word, label) pairs of the task's verbalizer; () when the model answers label names."""
        return self.task.quality.answers

    @functools.cached_property
    def kind(self) -> TaskType:
        """The task type (labeler.tasktypes): how an answer is constrained, parsed and stored."""
        return for_task(self.task)

    def parse(self, choice: Choice, text: str = "") -> Answer:
        """The answer in `choice`, its word mapped to its label (labeler.label.parse). For a task type scored
        element by element the answer is parsed by the type against the item's `text` and its annotation
        kept encoded (`TaskType.encode`) as the answer's label."""
        if self.kind.elementwise:
            got = self.kind.parse(choice.text, text)
            label = None if got.error is not None else self.kind.encode(got.value)
            return Answer(label=label, raw=choice.text, error=got.error, dropped=got.dropped)
        json_answer = answer_format(self.task, self.profile) == "json"
        return parse_choice(choice, self.task.label_names, json_answer=json_answer, answers=self.answers)

    def reask(self, answer: Answer) -> str:
        """The user turn that re-asks after an answer that did not parse."""
        if self.kind.elementwise:
            return f"That is not a valid answer: {answer.error}. Answer again with JSON only, as asked."
        return f"That is not a valid answer. Answer with exactly one of: {', '.join(self.task.label_names)}."

    @functools.cached_property
    def _constraint(self) -> tuple[dict[str, Any] | None, str | None, bool]:
        """(response_format, grammar, ask for logprobs)."""
        verbalized = "verbalized" in self.task.confidence.methods
        fmt = grammar = None
        words = answer_words(self.task)
        if self.kind.elementwise:  # the type's own JSON answer; per-element confidence comes from samples
            if self.profile.structured == "json_schema":
                fmt = self.kind.response_format(words)
            elif self.profile.structured == "grammar":
                grammar = self.kind.grammar(words)
            return fmt, grammar, False
        if self.profile.structured == "json_schema":
            fmt = json_schema(words, verbalized)
        elif self.profile.structured == "grammar":
            grammar = label_grammar(words, answer_format(self.task, self.profile), verbalized)
        return fmt, grammar, self.profile.logprobs and "logprob" in self.task.confidence.methods

    def messages(self, text: str) -> tuple[Message, ...]:
        if self.selector.per_item:  # this item's own examples: a different prompt prefix for every item
            examples = example_vars(self.task, self.selector.select(text))
            return render(self.template, {**self._fixed_vars, "text": text, "examples": examples})
        return render(self.template, {**self._fixed_vars, "text": text})

    def build(self, text: str, *, temperature: float | None = None, n: int = 1, seed: int | None = None) -> Request:
        ep = self.member.endpoint
        fmt, grammar, want_logprobs = self._constraint
        return Request(
            model=ep.model,
            messages=self.messages(text),
            max_tokens=ep.max_output_tokens,
            temperature=ep.temperature if temperature is None else temperature,
            n=n,
            logprobs=want_logprobs,
            top_logprobs=self.profile.top_logprobs if want_logprobs else 0,
            response_format=fmt,
            grammar=grammar,
            stop=self.profile.stop,
            seed=ep.seed if seed is None else seed,
        )
