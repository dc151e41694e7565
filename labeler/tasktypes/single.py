"""single: one label from the set per item — the task type every stage was built for.

Asking, parsing and evaluating are the functions the pipeline has always used (`label.prompts`,
`label.parse`, `evaluate.classification`); this class only gives them the task-type protocol's names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from labeler.tasktypes import Parsed, one_of


@dataclass(frozen=True)
class Single:
    labels: tuple[str, ...]
    name: str = "single"
    elementwise: bool = False

    def response_format(self, words: Sequence[str]) -> dict[str, Any]:
        from labeler.label.constraints import json_schema

        return json_schema(tuple(words), verbalized=False)

    def grammar(self, words: Sequence[str]) -> str:
        from labeler.label.constraints import label_grammar

        return label_grammar(tuple(words), "json", verbalized=False)

    def parse(self, raw: str, text: str) -> Parsed:
        from labeler.label.parse import parse_text

        label, _conf, error = parse_text(raw, self.labels)
        return Parsed(label, error)

    def check(self, value: Any, text: str) -> str | None:
        # parse does not call it: label.parse.parse_text only ever returns a label of the set (its speed kept)
        return None if value in self.labels else f"label {str(value)[:60]!r} is not one of: {one_of(self.labels)}"

    def calibration_group(self, element: str) -> str:
        return element

    def calibration_groups(self) -> tuple[str, ...]:
        return tuple(f"label {lab}" for lab in self.labels)

    def encode(self, value: Any) -> str | None:
        return None if value is None else str(value)

    def decode(self, stored: str | None) -> Any:
        return stored

    def elements(self, value: Any) -> tuple[str, ...]:
        return () if value is None else (f"label {value}",)

    def agreement(self, a: Any, b: Any) -> float:
        return 1.0 if a == b else 0.0

    def evaluate(self, truth: Sequence[Any], pred: Sequence[Any], *, n_boot: int, seed: int) -> dict[str, Any]:
        from labeler.evaluate.classification import agreement

        return asdict(agreement(truth, pred, labels=self.labels, n_boot=n_boot, seed=seed))
