"""Task configuration: one TOML file per task, validated with errors that name the key.

Paths inside the file are relative to the file. API keys are never read from the file: `api_key_env`
names the environment variable that holds the key. `OPENAI_BASE_URL` / `OPENAI_API_KEY` in the
environment override the default member's endpoint, as the openai client does.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from labeler.errors import ConfigError
from labeler.quality_config import QUALITY_KEYS, Quality, parse_quality
from labeler.tasktypes import KIND_KEYS, TaskKind, parse_kind
from labeler.types import Example, LabelDef

LOCAL = "local"  # base_url value that means: the embedded llama.cpp server labeler starts for you
CONFIDENCE_METHODS = ("logprob", "verbalized", "consistency")


@dataclass(frozen=True)
class Endpoint:
    """One model behind one OpenAI-compatible server, and how to talk to it."""

    base_url: str = LOCAL
    model: str = "gemma3-270m"
    api_key_env: str = "OPENAI_API_KEY"
    profile: str = "auto"
    max_output_tokens: int = 16
    temperature: float = 0.0
    timeout: float = 60.0
    concurrency: int = 2
    requests_per_minute: float = 0.0  # 0 = no limit
    tokens_per_minute: float = 0.0
    price_input_per_1m: float = 0.0
    price_output_per_1m: float = 0.0
    seed: int | None = None
    # issue 13, labeling at scale (see the block "scale keys" below)
    items_per_request: int = 1  # K items in one prompt, one answer per item id
    adaptive_concurrency: bool = False  # AIMD on 429s and latency, from `concurrency` up to max_concurrency
    max_concurrency: int = 0  # the ceiling of adaptive concurrency; 0 = 8 x concurrency
    endpoints: tuple[Endpoint, ...] = ()  # replicas of this model: [[model.endpoints]] base_url, concurrency, ...
    endpoint_cooldown: float = 30.0  # seconds a failing replica is taken out

    def api_key(self) -> str:
        return os.environ.get(self.api_key_env, "") or "not-needed"


@dataclass(frozen=True)
class Member:
    """One ensemble member: an endpoint, a template and sampling params."""

    name: str
    endpoint: Endpoint
    template: Path  # for instruction-tuned chat models
    completion_template: Path | None = None  # for base models (profile prompt_style "completion"), if given


@dataclass(frozen=True)
class RetryPolicy:
    """`[retry]`: attempts per request, and the waits between them (seconds).

    Our own backoff is jittered exponential from `initial_wait`, capped at `max_wait`. A server's
    `retry-after` (seconds or an HTTP date) is waited out in full when it is longer, up to
    `max_retry_after`, a separate cap: a 45 s retry-after is waited 45 s even with max_wait = 30.
    Rate limits (429, 503 with retry-after) spend no attempts: a request waits on them for at most
    `max_rate_limited_s`, then the run stops for `labeler resume`."""

    max_attempts: int = 6
    initial_wait: float = 0.5
    max_wait: float = 30.0
    max_retry_after: float = 300.0
    max_rate_limited_s: float = 600.0


@dataclass(frozen=True)
class ConfidenceConfig:
    methods: tuple[str, ...] = ("logprob",)
    samples: int = 5
    sample_temperature: float = 0.8
    combine: str = "weighted"  # ensemble vote: "majority" or "weighted"


@dataclass(frozen=True)
class RoutingConfig:
    low_confidence: float = 0.6
    min_vote_share: float = 0.67
    max_divergence: float = 0.2
    audit_fraction: float = 0.05
    seed: int = 0
    max_items: int | None = None
    max_dollars: float | None = None


@dataclass(frozen=True)
class ReviewConfig:
    price_per_label: float = 0.10  # dollars per human label
    seconds_per_label: float = 30.0
    show_suggestion: bool = True
    reasons: tuple[str, ...] = ("guideline gap", "ambiguous", "model error", "other")


@dataclass(frozen=True)
class TaskConfig:
    name: str
    path: Path  # the TOML file itself
    labels: tuple[LabelDef, ...]
    examples: tuple[Example, ...]
    instructions: str
    input_path: Path | None
    id_column: str
    text_column: str
    gold_column: str | None
    max_input_tokens: int
    members: tuple[Member, ...]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    confidence: ConfidenceConfig = field(default_factory=ConfidenceConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    review: ReviewConfig = field(default_factory=ReviewConfig)
    raw: Mapping[str, Any] = field(default_factory=dict)  # the parsed TOML, for the manifest
    # issue 12, the quality loop: answer words, few-shot selection, variants, tune, correction (quality_config)
    quality: Quality = field(default_factory=Quality)
    # issue 13, labeling at scale: the OpenAI Batch API, and the template for K items a request
    batch: BatchConfig = field(default_factory=lambda: BatchConfig())
    multi_template: Path | None = None
    kind: TaskKind = field(default_factory=TaskKind)  # issue 19: [task] type, min/max_labels, allow_overlap

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(label.name for label in self.labels)

    @property
    def primary(self) -> Member:
        return self.members[0]


_TOP_KEYS = {"task", "labels", "input", "model", "members", "retry", "confidence", "routing", "review"}
_TOP_KEYS |= QUALITY_KEYS
_TASK_KEYS = {"name", "template", "completion_template", "instructions", "examples"}
_TASK_KEYS |= {"answers"}
_TOP_KEYS |= {"batch", "aggregate"}  # issue 13; issue 20 (labeler.aggregate parses it)
_TASK_KEYS |= {"multi_template"}  # issue 13
_TASK_KEYS |= KIND_KEYS  # issue 19
_INPUT_KEYS = {"path", "id_column", "text_column", "gold_column", "max_input_tokens"}
_ENDPOINT_KEYS = set(Endpoint.__dataclass_fields__)


def _check_keys(section: str, table: Mapping[str, Any], allowed: set[str]) -> None:
    if not isinstance(table, Mapping):
        raise ConfigError(f"[{section}] must be a table")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"unknown key {section + '.' if section else ''}{unknown[0]}; allowed: {', '.join(sorted(allowed))}"
        )


def _typed(section: str, key: str, value: Any, want: type, *, minimum: float | None = None) -> Any:
    name = f"{section}.{key}"
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if want is int and isinstance(value, bool):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if not isinstance(value, want):
        raise ConfigError(f"{name} must be {want.__name__}, got {value!r}")
    if minimum is not None and value < minimum:  # type: ignore[operator]
        raise ConfigError(f"{name} must be >= {minimum}, got {value!r}")
    return value


def _dataclass_from(section: str, table: Mapping[str, Any], base: Any) -> Any:
    """Override the fields of dataclass instance `base` from `table`, checking names and types."""
    fields = base.__dataclass_fields__
    _check_keys(section, table, set(fields))
    updates: dict[str, Any] = {}
    for key, value in table.items():
        current = getattr(base, key)
        if isinstance(current, tuple):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{section}.{key} must be a list of strings")
            updates[key] = tuple(value)
        elif current is None or key == "seed":
            if value is not None and not isinstance(value, int | float):
                raise ConfigError(f"{section}.{key} must be a number, got {value!r}")
            updates[key] = value
        else:
            minimum = 0 if isinstance(current, int | float) and not isinstance(current, bool) else None
            minimum = None if key == "timeout" else minimum  # _endpoint says "> 0 seconds", for -1 as for 0
            updates[key] = _typed(section, key, value, type(current), minimum=minimum)
    return replace(base, **updates)


def _endpoint(section: str, table: Mapping[str, Any], base: Endpoint) -> Endpoint:
    table, replicas = _pop_replicas(section, table, base)  # issue 13: [[model.endpoints]]
    ep: Endpoint = _dataclass_from(section, table, base)
    ep = _with_replicas(section, ep, replicas)
    if ep.concurrency < 1:
        raise ConfigError(f"{section}.concurrency must be >= 1, got {ep.concurrency}")
    if ep.max_output_tokens < 1:
        raise ConfigError(f"{section}.max_output_tokens must be >= 1")
    if not ep.timeout > 0:  # 0 would fail every request at once, and look like a dead server
        raise ConfigError(f"{section}.timeout must be > 0 seconds, got {ep.timeout!r}; 60 is usual")
    return ep


def _examples(value: Any, base_dir: Path, label_names: set[str], key: str = "task.examples") -> tuple[Example, ...]:
    rows: list[tuple[str, Any]]  # (where, for messages; the row)
    if isinstance(value, str):
        path = (base_dir / value).resolve()
        if not path.exists():
            raise ConfigError(f"{key}: file {path} not found; fix the path (relative to the config)")
        from labeler.inputs import read_records  # JSONL or CSV, BOM-safe, line numbers in its errors

        rows = [(f"{key}: {path.name} line {n}", rec) for n, rec in read_records(path, what=key)]
    elif isinstance(value, list):
        rows = [(f"{key}[{i}]", row) for i, row in enumerate(value)]
    else:
        raise ConfigError(f"{key} must be a JSONL file path or a list of {{text, label}} tables")
    out, from_file = [], isinstance(value, str)  # a file's other columns (id, ...) are ignored; a table's: typos
    for where, row in rows:
        keys = set(row) if isinstance(row, Mapping) else set()
        if not {"text", "label"} <= keys or (keys != {"text", "label"} and not from_file):
            raise ConfigError(f"{where} must have the keys text and label{'' if from_file else ' and no others'}")
        label = str(row["label"]).strip()
        if label not in label_names:
            raise ConfigError(f"{where} has label {label!r}, which is not in [[labels]]")
        out.append(Example(text=str(row["text"]), label=label))
    return tuple(out)


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> TaskConfig:
    """Read and validate a task config. `env` defaults to os.environ (for OPENAI_BASE_URL)."""
    env = os.environ if env is None else env
    path = Path(path).resolve()
    if not path.exists():
        raise ConfigError(f"config file {path} not found; pass the path of a task TOML file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name} is not valid TOML: {exc}") from None
    return parse_config(raw, path=path, env=env)


def parse_config(raw: dict[str, Any], *, path: Path, env: Mapping[str, str] | None = None) -> TaskConfig:
    """Validate a task config table as read from `path` (relative paths inside are relative to its folder).
    A run's store reads its task this way from the manifest's snapshot, not from the live file."""
    env = os.environ if env is None else env
    base_dir = path.parent
    _check_keys("", raw, _TOP_KEYS)

    task = raw.get("task")
    if task is None:
        raise ConfigError("missing [task] table; add [task] with name and template")
    _check_keys("task", task, _TASK_KEYS)
    for key in ("name", "template"):
        if key not in task:
            raise ConfigError(f"missing task.{key}")
    name = _typed("task", "name", task["name"], str)
    instructions = _typed("task", "instructions", task.get("instructions", ""), str)

    labels_raw = raw.get("labels")
    if not isinstance(labels_raw, list) or len(labels_raw) < 2:
        raise ConfigError("[[labels]] must list at least two labels, each with name and description")
    labels = []
    for i, lab in enumerate(labels_raw):
        _check_keys(f"labels[{i}]", lab, {"name", "description"})
        if not isinstance(lab.get("name"), str) or not lab["name"].strip():
            raise ConfigError(f"labels[{i}].name must be a non-empty string")
        # " sport" would never match an answer: the spaces are a typo, not part of the label
        labels.append(LabelDef(lab["name"].strip(), str(lab.get("description", ""))))
    names = [lab.name for lab in labels]
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if n.lower() in seen:
            raise ConfigError(
                f"labels[{seen[n.lower()]}] and labels[{i}] are both named {n!r} (ignoring case and spaces); "
                "give every label its own name"
            )
        seen[n.lower()] = i
    examples = _examples(task.get("examples", []), base_dir, set(names))

    inp = raw.get("input", {})
    _check_keys("input", inp, _INPUT_KEYS)
    input_path = (base_dir / inp["path"]).resolve() if "path" in inp else None
    max_input_tokens = _typed("input", "max_input_tokens", inp.get("max_input_tokens", 1024), int, minimum=16)

    base_ep = _endpoint("model", raw.get("model", {}), Endpoint())
    if env.get("OPENAI_BASE_URL"):
        base_ep = replace(base_ep, base_url=env["OPENAI_BASE_URL"])
    template = (base_dir / task["template"]).resolve()
    completion = (base_dir / task["completion_template"]).resolve() if "completion_template" in task else None
    members = [Member(name="default", endpoint=base_ep, template=template, completion_template=completion)]
    for i, m in enumerate(raw.get("members", [])):
        section = f"members[{i}]"
        if not isinstance(m, Mapping):
            raise ConfigError(f"{section} must be a table; write each member as a [[members]] table")
        m = dict(m)
        mname = m.pop("name", f"member{i + 1}")
        mtemplate = (base_dir / m.pop("template")).resolve() if "template" in m else template
        mcompletion = (base_dir / m.pop("completion_template")).resolve() if "completion_template" in m else completion
        if "template" in raw["members"][i] and "completion_template" not in raw["members"][i]:
            mcompletion = None  # a member that names its own template uses it for every model
        members.append(
            Member(
                name=str(mname),
                endpoint=_endpoint(section, m, base_ep),
                template=mtemplate,
                completion_template=mcompletion,
            )
        )
    if len({m.name for m in members}) != len(members):
        raise ConfigError("members: names must be unique and not 'default'")
    for m in members:
        for t in (m.template, m.completion_template):
            if t is not None and not t.exists():
                raise ConfigError(f"template {t} not found; fix task.template (relative to the config)")

    confidence: ConfidenceConfig = _dataclass_from("confidence", raw.get("confidence", {}), ConfidenceConfig())
    bad = [m for m in confidence.methods if m not in CONFIDENCE_METHODS]
    if bad:
        raise ConfigError(f"confidence.methods: unknown method {bad[0]!r}; use {', '.join(CONFIDENCE_METHODS)}")
    if confidence.combine not in ("majority", "weighted"):
        raise ConfigError("confidence.combine must be 'majority' or 'weighted'")
    retry: RetryPolicy = _dataclass_from("retry", raw.get("retry", {}), RetryPolicy())
    if not (got := retry.max_rate_limited_s) > 0:
        raise ConfigError(f"retry.max_rate_limited_s must be > 0 seconds, got {got!r}; 600 is usual")
    routing: RoutingConfig = _dataclass_from("routing", raw.get("routing", {}), RoutingConfig())
    if not 0.0 <= routing.audit_fraction <= 0.5:
        raise ConfigError("routing.audit_fraction must be between 0 and 0.5 (0.05–0.10 is usual)")

    return TaskConfig(
        name=name,
        path=path,
        labels=tuple(labels),
        examples=examples,
        instructions=instructions,
        input_path=input_path,
        id_column=_typed("input", "id_column", inp.get("id_column", "id"), str),
        text_column=_typed("input", "text_column", inp.get("text_column", "text"), str),
        gold_column=inp.get("gold_column"),
        max_input_tokens=max_input_tokens,
        members=tuple(members),
        retry=retry,
        confidence=confidence,
        routing=routing,
        review=_dataclass_from("review", raw.get("review", {}), ReviewConfig()),
        raw=raw,
        quality=parse_quality(
            raw,
            base_dir=base_dir,
            labels=tuple(names),
            read_examples=lambda value, key: _examples(value, base_dir, set(names), key),
            items_per_request=tuple(m.endpoint.items_per_request for m in members),
        ),
        **_scale_fields(raw, task, base_dir, tuple(members)),  # issue 13
        kind=parse_kind(task, len(names)),
    )


# --- scale keys (issue 13): K items a request, replicas, adaptive concurrency, the Batch API ---------
MAX_ITEMS_PER_REQUEST = 100
_REPLICA_KEYS = {"base_url", "api_key_env", "concurrency", "max_concurrency", "timeout"}
_REPLICA_KEYS |= {"requests_per_minute", "tokens_per_minute"}
BATCH_MAX_REQUESTS = 50_000  # the OpenAI Batch API's limits per input file
BATCH_MAX_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class BatchConfig:
    """`[batch]`: submit the run through the OpenAI Batch API (half the price, its own rate limits).

    `labeler run` writes the requests as JSONL, uploads them, creates the batches and (with `wait`) polls
    every `poll_seconds` until they end; `labeler resume` picks up at whatever stage a run was stopped."""

    enabled: bool = False
    completion_window: str = "24h"
    poll_seconds: float = 30.0
    wait: bool = True  # poll until every batch has ended; false: submit and return (resume collects)
    max_requests_per_file: int = BATCH_MAX_REQUESTS
    max_bytes_per_file: int = BATCH_MAX_BYTES


def _pop_replicas(
    section: str, table: Mapping[str, Any], base: Endpoint
) -> tuple[Mapping[str, Any], list[Mapping[str, Any]] | None]:
    """Take `endpoints` out of an endpoint table (a list of tables, parsed by _with_replicas). A member
    that names its own base_url and no endpoints does not inherit the default member's replicas."""
    if not isinstance(table, Mapping) or "endpoints" not in table:
        if isinstance(table, Mapping) and "base_url" in table and base.endpoints:
            return table, []
        return table, None
    rest = dict(table)
    value = rest.pop("endpoints")
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise ConfigError(f"{section}.endpoints must be a list of tables: [[{section}.endpoints]] base_url = ...")
    return rest, value


def _with_replicas(section: str, ep: Endpoint, replicas: list[Mapping[str, Any]] | None) -> Endpoint:
    if not 1 <= ep.items_per_request <= MAX_ITEMS_PER_REQUEST:
        raise ConfigError(f"{section}.items_per_request must be 1..{MAX_ITEMS_PER_REQUEST}, got {ep.items_per_request}")
    if ep.max_concurrency and ep.max_concurrency < ep.concurrency:
        raise ConfigError(f"{section}.max_concurrency ({ep.max_concurrency}) must be >= concurrency ({ep.concurrency})")
    if replicas is None:
        return ep
    out = []
    plain = replace(ep, endpoints=())
    for i, entry in enumerate(replicas):
        where = f"{section}.endpoints[{i}]"
        _check_keys(where, entry, _REPLICA_KEYS)
        if not isinstance(entry.get("base_url"), str) or not entry["base_url"]:
            raise ConfigError(f"{where}.base_url is missing; every replica names its server")
        if entry["base_url"] == LOCAL:
            raise ConfigError(f'{where}.base_url = "local" is not a replica; give the URL of a running server')
        out.append(_endpoint(where, entry, plain))
    return replace(ep, endpoints=tuple(out))


def _scale_fields(
    raw: Mapping[str, Any], task: Mapping[str, Any], base_dir: Path, members: tuple[Member, ...]
) -> dict[str, Any]:
    batch: BatchConfig = _dataclass_from("batch", raw.get("batch", {}), BatchConfig())
    if not 1 <= batch.max_requests_per_file <= BATCH_MAX_REQUESTS:
        raise ConfigError(f"batch.max_requests_per_file must be 1..{BATCH_MAX_REQUESTS}")
    if not 1024 <= batch.max_bytes_per_file <= BATCH_MAX_BYTES:
        raise ConfigError(f"batch.max_bytes_per_file must be 1024..{BATCH_MAX_BYTES} (the API's 200 MB)")
    if not batch.poll_seconds > 0:
        raise ConfigError("batch.poll_seconds must be > 0; 30 is usual")
    if batch.enabled:
        methods = (raw.get("confidence") or {}).get("methods") or ()
        if "consistency" in methods:
            raise ConfigError('batch.enabled draws no consistency samples; drop "consistency" from confidence.methods')
        for m in members:
            if m.endpoint.base_url == LOCAL or m.endpoint.endpoints:
                raise ConfigError(
                    f"batch.enabled needs one API server per member with the Batch API; member {m.name!r} has "
                    + ("the embedded local model" if m.endpoint.base_url == LOCAL else "several endpoints")
                    + "; set batch.enabled = false or give it an OpenAI base_url"
                )
    multi = None
    if "multi_template" in task:
        multi = (base_dir / _typed("task", "multi_template", task["multi_template"], str)).resolve()
        if not multi.exists():
            raise ConfigError(f"template {multi} not found; fix task.multi_template (relative to the config)")
    return {"batch": batch, "multi_template": multi}
