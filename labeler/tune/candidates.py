"""Candidates: every prompt variant of the task crossed with every few-shot strategy of `[tune] strategies`.

A candidate's task config is the run's task with the variant's template, answer words and instructions
and the strategy's example selection; the tuned task TOML is the run's config with the chosen
candidate and correction written in (paths made relative to where the TOML is written), so a user can
keep it and start new runs from it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from labeler.config import TaskConfig
from labeler.quality_config import DEFAULT_K, Variant, shared_prompt_refuses
from labeler.types import Example


@dataclass(frozen=True)
class Candidate:
    variant: Variant
    strategy: str
    k: int

    @property
    def name(self) -> str:
        return f"{self.variant.name}/{self.strategy}" + (f"{self.k}" if self.strategy != "fixed" else "")


def base_variant(task: TaskConfig) -> Variant:
    """The task as configured, as a variant (when [[variants]] lists none)."""
    return Variant(name="task", answers=task.quality.answers)


def candidates(
    task: TaskConfig, *, strategies: Sequence[str] | None = None, variants: Sequence[str] | None = None
) -> list[Candidate]:
    """Variants × strategies, in config order (earlier = simpler: it wins ties); `variants` keeps only the
    variants of those names. With K > 1 items a prompt, per-item strategies (knn, mmr) are refused: the K
    items share one set of examples (labeler.quality_config)."""
    all_variants = task.quality.variants or (base_variant(task),)
    chosen = [v for v in all_variants if variants is None or v.name in variants]
    if not chosen:
        names = ", ".join(v.name for v in all_variants)
        raise ValueError(f"no variant named {', '.join(variants or ())}; the task's variants: {names}; fix --variant")
    k_items = task.primary.endpoint.items_per_request
    per_item = shared_prompt_refuses(strategies or (), k_items)
    if per_item:
        raise ValueError(
            f"--strategy {per_item[0]} chooses examples per item, but the run asks {k_items} items a prompt "
            "(model.items_per_request), which share one set: drop it, or tune a run with items_per_request = 1"
        )
    variants_out = tuple(chosen)
    k_cfg = task.quality.fewshot.k
    k_other = task.quality.tune.k or k_cfg or DEFAULT_K
    out = []
    for v in variants_out:
        for s in strategies or task.quality.tune.strategies:
            out.append(Candidate(v, s, k_cfg if s == "fixed" else k_other))
    return out


def candidate_task(task: TaskConfig, c: Candidate, *, pool: tuple[Example, ...] | None = None) -> TaskConfig:
    """The task config that labels with candidate `c` (all members get the variant's templates). `pool`:
    the few-shot pool to use instead of the task's (e.g. without the random audit's items)."""
    v = c.variant
    members = tuple(
        replace(
            m,
            template=v.template or m.template,
            completion_template=v.completion_template or m.completion_template,
        )
        for m in task.members
    )
    fewshot = replace(task.quality.fewshot, strategy=c.strategy, k=c.k)
    examples = task.examples
    if pool is not None:
        examples, fewshot = pool, replace(fewshot, pool=(), pool_files=())
    quality = replace(task.quality, answers=v.answers, fewshot=fewshot)
    return replace(
        task,
        members=members,
        examples=examples,
        instructions=task.instructions if v.instructions is None else v.instructions,
        quality=quality,
    )


# --- the tuned task TOML -----------------------------------------------------------------------
_PATH_KEYS = {"task": ("template", "completion_template", "examples"), "input": ("path",)}


def _rel(path: str, src_dir: Path, dst_dir: Path) -> str:
    return os.path.relpath((src_dir / path).resolve(), dst_dir.resolve())


def tuned_config(
    raw: Mapping[str, Any],
    *,
    src_dir: Path,
    dst_dir: Path,
    candidate: Candidate,
    examples_file: Path,
    correction: Mapping[str, Any] | None,
    note: str,
) -> dict[str, Any]:
    """The run's config table with the chosen candidate and correction written in; relative paths are
    rewritten for a file in `dst_dir`. The few-shot pool becomes `examples_file` (task.examples)."""
    doc: dict[str, Any] = json.loads(json.dumps(raw))  # a deep copy
    for section, keys in _PATH_KEYS.items():
        for key in keys:
            value = doc.get(section, {}).get(key)
            if isinstance(value, str):
                doc[section][key] = _rel(value, src_dir, dst_dir)
    for table in (*doc.get("members", []), *doc.get("variants", [])):
        for key in ("template", "completion_template"):
            if isinstance(table.get(key), str):
                table[key] = _rel(table[key], src_dir, dst_dir)
    task = doc.setdefault("task", {})
    v = candidate.variant
    for key, path in (("template", v.template), ("completion_template", v.completion_template)):
        if path is not None:
            task[key] = os.path.relpath(path, dst_dir.resolve())
    if v.instructions is not None:
        task["instructions"] = v.instructions
    task.pop("answers", None)
    if v.answers:
        words: dict[str, list[str]] = {}
        for word, label in v.answers:
            words.setdefault(label, []).append(word)
        task["answers"] = words
    task["examples"] = os.path.relpath(examples_file.resolve(), dst_dir.resolve())
    fewshot = {k: val for k, val in doc.get("fewshot", {}).items() if k != "pool"}
    fewshot.update({"strategy": candidate.strategy, "k": candidate.k})
    doc["fewshot"] = fewshot
    doc.pop("correction", None)
    if correction is not None:
        doc["correction"] = dict(correction)
    doc["_note"] = note
    return doc


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"TOML cannot hold {v!r}")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a TOML basic string
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise ValueError(f"TOML cannot hold {type(v).__name__}")


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() and k.isascii() else json.dumps(k)


def dumps_toml(doc: Mapping[str, Any]) -> str:
    """TOML text of a config table: sections of scalars and inline tables, arrays of tables for lists of
    tables. A top-level "_note" becomes the opening comment."""
    lines = [f"# {line}" for line in str(doc.get("_note", "")).splitlines()]
    for name, value in doc.items():
        if name == "_note":
            continue
        if isinstance(value, Mapping):
            lines += ["", f"[{_key(name)}]", *(f"{_key(k)} = {_value(v)}" for k, v in value.items())]
        elif isinstance(value, list) and value and all(isinstance(t, Mapping) for t in value):
            for t in value:
                lines += ["", f"[[{_key(name)}]]", *(f"{_key(k)} = {_value(v)}" for k, v in t.items())]
        else:
            lines.insert(len([ln for ln in lines if ln.startswith("#")]), f"{_key(name)} = {_value(value)}")
    return "\n".join(lines).lstrip("\n") + "\n"
