"""The task config's quality-loop keys (issue 12), validated with errors that name the key; parse_config
(labeler.config) calls `parse_quality` and stores the result on the TaskConfig.

    [task] answers = { spam = ["spam", "advert"], ham = ["ham"] }   answer words per label (a verbalizer):
                     the grammar / JSON enum offers the words, logprob confidence sums a label's words,
                     the stored label is the label; a label not named answers with its own name
    [fewshot]        strategy = "fixed" | "balanced" | "knn" | "mmr"; k (examples per prompt, 0 = all for
                     fixed, 8 otherwise); pool (extra example files, beside task.examples: promoted
                     corrections go there); mmr_lambda; seed
    [[variants]]     name, template, completion_template, answers, instructions: prompt variants `labeler tune`
                     tries (each crossed with tune.strategies)
    [tune]           strategies, corrections, folds, max_labels, seed, target_accuracy, n_boot, k (examples
                     per prompt for the strategies other than fixed; default fewshot.k, else 8)
    [correction]     kind, offsets = {label = x}, content_free = {label = p}, objective, source: the bias
                     correction applied to every item's distribution (written by `labeler tune`)

With K > 1 items a request (`model.items_per_request`, or a member's), the K items share one prompt and so
one set of examples: per-item strategies (knn, mmr) are refused in fewshot.strategy and in an explicit
tune.strategies, and tune.strategies defaults to fixed and balanced. Answer words need no such rule: a
multi-item prompt offers them (labeler.label.multi).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from labeler.errors import ConfigError
from labeler.types import Example

STRATEGIES = ("fixed", "balanced", "knn", "mmr")
PER_ITEM_STRATEGIES = ("knn", "mmr")
CORRECTIONS = ("none", "contextual", "offsets_f1", "offsets_ll", "contextual+offsets_f1", "contextual+offsets_ll")
DEFAULT_K = 8

Answers = tuple[tuple[str, str], ...]  # (answer word, label), in label order


@dataclass(frozen=True)
class FewShotConfig:
    strategy: str = "fixed"
    k: int = 0  # 0: all examples for fixed, DEFAULT_K for the others
    pool: tuple[Example, ...] = ()  # from the pool files (task.examples come first)
    pool_files: tuple[Path, ...] = ()
    mmr_lambda: float = 0.7
    seed: int = 0

    @property
    def per_item(self) -> bool:
        return self.strategy in PER_ITEM_STRATEGIES


@dataclass(frozen=True)
class Variant:
    name: str
    template: Path | None = None
    completion_template: Path | None = None
    answers: Answers = ()
    instructions: str | None = None


@dataclass(frozen=True)
class TuneConfig:
    strategies: tuple[str, ...] = STRATEGIES
    corrections: tuple[str, ...] = CORRECTIONS
    folds: int = 5
    max_labels: int = 200
    seed: int = 0
    target_accuracy: float = 0.9
    n_boot: int = 1000
    k: int = 0


@dataclass(frozen=True)
class CorrectionConfig:
    kind: str = "none"
    offsets: tuple[tuple[str, float], ...] = ()  # label -> offset added to its log-probability
    content_free: tuple[tuple[str, float], ...] = ()  # label -> the model's mean probability on content-free inputs
    objective: str = ""
    source: str = ""  # what it was fitted on, in words


@dataclass(frozen=True)
class Quality:
    answers: Answers = ()
    fewshot: FewShotConfig = field(default_factory=FewShotConfig)
    variants: tuple[Variant, ...] = ()
    tune: TuneConfig = field(default_factory=TuneConfig)
    correction: CorrectionConfig = field(default_factory=CorrectionConfig)


QUALITY_KEYS = {"fewshot", "variants", "tune", "correction"}
VARIANT_KEYS = {"name", "template", "completion_template", "answers", "instructions"}


def _table(section: str, value: Any, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"[{section}] must be a table")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ConfigError(f"unknown key {section}.{unknown[0]}; allowed: {', '.join(sorted(allowed))}")
    return value


def _number(name: str, value: Any, kind: type, low: float, high: float | None = None) -> Any:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and (kind is float or isinstance(value, int))
    if not ok or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ConfigError(f"{name} must be {'an integer' if kind is int else 'a number'} {bound}, got {value!r}")
    return kind(value)


def _choices(name: str, value: Any, allowed: tuple[str, ...]) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{name} must be a non-empty list of strings out of {', '.join(allowed)}")
    bad = [v for v in value if v not in allowed]
    if bad:
        raise ConfigError(f"{name}: unknown value {bad[0]!r}; use {', '.join(allowed)}")
    return tuple(value)


def parse_answers(section: str, value: Any, labels: tuple[str, ...]) -> Answers:
    """`{label = "word" | ["word", ...]}` -> ((word, label), ...) in label order; unnamed labels answer with
    their own name. Words are unique ignoring case (one word cannot mean two labels)."""
    if not value:
        return ()
    if not isinstance(value, Mapping):
        raise ConfigError(f"{section}.answers must be a table: label = [answer words]")
    unknown = [k for k in value if k not in labels]
    if unknown:
        raise ConfigError(f"{section}.answers names {unknown[0]!r}, which is not in [[labels]]")
    out: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for label in labels:
        words = value.get(label, [label])
        words = [words] if isinstance(words, str) else words
        if not isinstance(words, list) or not words or not all(isinstance(w, str) and w.strip() for w in words):
            raise ConfigError(f"{section}.answers.{label} must be a word or a non-empty list of words")
        for w in words:
            w = w.strip()
            if w.lower() in seen:
                raise ConfigError(
                    f"{section}.answers: {w!r} is given for {seen[w.lower()]!r} and {label!r}; "
                    "each word means one label"
                )
            seen[w.lower()] = label
            out.append((w, label))
    return tuple(out)


def parse_quality(
    raw: Mapping[str, Any],
    *,
    base_dir: Path,
    labels: tuple[str, ...],
    read_examples: Callable[[Any, str], tuple[Example, ...]],
    items_per_request: Sequence[int] = (),
) -> Quality:
    """The quality-loop sections of a task table. `read_examples(value, where)` reads a task.examples-style
    value (file path or inline list) and checks its labels; `items_per_request`: each member's K, the
    default member first (see the module docstring)."""
    answers = parse_answers("task", raw.get("task", {}).get("answers"), labels)

    fs = _table("fewshot", raw.get("fewshot", {}), {"strategy", "k", "pool", "mmr_lambda", "seed"})
    strategy = fs.get("strategy", "fixed")
    if strategy not in STRATEGIES:
        raise ConfigError(f"fewshot.strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    pool_value = fs.get("pool", [])
    pool_value = [pool_value] if isinstance(pool_value, str) else pool_value
    if not isinstance(pool_value, list) or not all(isinstance(p, str) for p in pool_value):
        raise ConfigError("fewshot.pool must be a file path or a list of paths (JSONL/CSV with text, label)")
    pool: list[Example] = []
    for p in pool_value:
        pool += read_examples(p, "fewshot.pool")
    fewshot = FewShotConfig(
        strategy=strategy,
        k=_number("fewshot.k", fs.get("k", 0), int, 0),
        pool=tuple(pool),
        pool_files=tuple((base_dir / p).resolve() for p in pool_value),
        mmr_lambda=_number("fewshot.mmr_lambda", fs.get("mmr_lambda", 0.7), float, 0.0, 1.0),
        seed=_number("fewshot.seed", fs.get("seed", 0), int, 0),
    )

    variants_raw = raw.get("variants", [])
    if not isinstance(variants_raw, list):
        raise ConfigError("variants must be a list of [[variants]] tables")
    variants = []
    for i, v in enumerate(variants_raw):
        v = _table(f"variants[{i}]", v, VARIANT_KEYS)
        name = v.get("name", f"variant{i + 1}")
        paths = {}
        for key in ("template", "completion_template"):
            if key in v:
                paths[key] = (base_dir / str(v[key])).resolve()
                if not paths[key].exists():
                    raise ConfigError(f"variants[{i}].{key}: {paths[key]} not found (paths are relative to the config)")
        instructions = v.get("instructions")
        if instructions is not None and not isinstance(instructions, str):
            raise ConfigError(f"variants[{i}].instructions must be a string")
        variants.append(
            Variant(
                name=str(name),
                template=paths.get("template"),
                completion_template=paths.get("completion_template"),
                answers=parse_answers(f"variants[{i}]", v.get("answers"), labels),
                instructions=instructions,
            )
        )
    if len({v.name for v in variants}) != len(variants):
        raise ConfigError("variants: names must be unique")

    t = _table("tune", raw.get("tune", {}), set(TuneConfig.__dataclass_fields__))
    tune = TuneConfig(
        strategies=_choices("tune.strategies", t["strategies"], STRATEGIES) if "strategies" in t else STRATEGIES,
        corrections=_choices("tune.corrections", t["corrections"], CORRECTIONS) if "corrections" in t else CORRECTIONS,
        folds=_number("tune.folds", t.get("folds", 5), int, 2),
        max_labels=_number("tune.max_labels", t.get("max_labels", 200), int, 10),
        seed=_number("tune.seed", t.get("seed", 0), int, 0),
        target_accuracy=_number("tune.target_accuracy", t.get("target_accuracy", 0.9), float, 0.0, 1.0),
        n_boot=_number("tune.n_boot", t.get("n_boot", 1000), int, 100),
        k=_number("tune.k", t.get("k", 0), int, 0),
    )

    c = _table("correction", raw.get("correction", {}), set(CorrectionConfig.__dataclass_fields__))
    kind = c.get("kind", "none")
    if kind not in CORRECTIONS:
        raise ConfigError(f"correction.kind must be one of {', '.join(CORRECTIONS)}, got {kind!r}")

    def per_label(key: str) -> tuple[tuple[str, float], ...]:
        table = c.get(key, {})
        if not isinstance(table, Mapping) or set(table) - set(labels):
            raise ConfigError(f"correction.{key} must be a table label = number over the [[labels]]")
        return tuple(
            (lab, _number(f"correction.{key}.{lab}", table[lab], float, -1e9)) for lab in labels if lab in table
        )

    correction = CorrectionConfig(
        kind=kind,
        offsets=per_label("offsets"),
        content_free=per_label("content_free"),
        objective=str(c.get("objective", "")),
        source=str(c.get("source", "")),
    )
    if kind != "none" and len(correction.offsets) != len(labels):
        raise ConfigError(f"correction.offsets must give every label an offset when correction.kind = {kind!r}")
    quality = Quality(answers=answers, fewshot=fewshot, variants=tuple(variants), tune=tune, correction=correction)
    return _with_items_per_request(quality, raw, items_per_request)


def _with_items_per_request(q: Quality, raw: Mapping[str, Any], ks: Sequence[int]) -> Quality:
    """Per-item example strategies refused with K > 1 items a prompt (the module docstring)."""
    big = next(((i, k) for i, k in enumerate(ks) if k > 1), None)
    if big is None:
        return q
    i, k = big
    own = i > 0 and "items_per_request" in raw.get("members", [])[i - 1]
    key = f"members[{i - 1}].items_per_request" if own else "model.items_per_request"
    why = f"{key} = {k} shows one set of examples to {k} items"
    if q.fewshot.per_item:
        raise ConfigError(
            f'{why}, so fewshot.strategy = "{q.fewshot.strategy}" (examples chosen per item) cannot apply: '
            f'set {key} = 1 or fewshot.strategy = "balanced"'
        )
    per_item = shared_prompt_refuses(q.tune.strategies, k)
    if per_item and "strategies" in raw.get("tune", {}):
        raise ConfigError(
            f'{why}, so labeler tune cannot try "{per_item[0]}" (examples chosen per item): '
            f"set {key} = 1 or drop it from tune.strategies"
        )
    strategies = tuple(s for s in q.tune.strategies if s not in PER_ITEM_STRATEGIES)
    return replace(q, tune=replace(q.tune, strategies=strategies))


def shared_prompt_refuses(strategies: Sequence[str], k: int) -> list[str]:
    """The one rule for K > 1 items a prompt: the K items share one set of examples, so the per-item
    strategies (knn, mmr) among `strategies` cannot apply; [] when k is 1."""
    return [s for s in strategies if s in PER_ITEM_STRATEGIES] if k > 1 else []
