"""multi_label: every label of the set that applies, between `min_labels` and `max_labels` of them.

The answer is JSON, `{"labels": ["sport", "politics"]}` (a bare JSON list or `a; b` text is read too). A name
outside the set, a repeated name or a count outside the bounds is an error naming it, which the runner
re-asks once, as for single labels; the parsed annotation is the sorted tuple of label names.

Evaluation (per label: precision, recall, F1, over-prediction with item-bootstrap intervals; micro and
macro F1, Hamming loss, subset accuracy, label cardinality human vs LLM) uses scikit-learn's multi-label
metrics for the point values and `scores.prf_table` for the intervals.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from labeler.tasktypes import Parsed, one_of

_LIST = re.compile(r"\[.*\]", re.DOTALL)
_OBJ = re.compile(r"\{.*\}", re.DOTALL)


def _gbnf(s: str) -> str:
    return json.dumps(json.dumps(s))  # a GBNF literal of the JSON string "s" (quotes included)


@dataclass(frozen=True)
class MultiLabel:
    labels: tuple[str, ...]
    min_labels: int = 0
    max_labels: int | None = None
    name: str = "multi_label"
    elementwise: bool = True

    def response_format(self, words: Sequence[str]) -> dict[str, Any]:
        # no uniqueItems: OpenAI's strict mode does not list it among the keywords it takes; a repeated
        # name is caught when parsing (and re-asked), as under the grammar
        array: dict[str, Any] = {"type": "array", "items": {"type": "string", "enum": list(words)},
                                 "minItems": self.min_labels}
        if self.max_labels is not None:
            array["maxItems"] = self.max_labels
        schema = {"type": "object", "properties": {"labels": array}, "required": ["labels"],
                  "additionalProperties": False}
        return {"type": "json_schema", "json_schema": {"name": "labels_answer", "strict": True, "schema": schema}}

    def grammar(self, words: Sequence[str]) -> str:
        """`{"labels": [...]}` with min..max names from the set (uniqueness is checked when parsing)."""
        alts = " | ".join(_gbnf(w) for w in words)
        hi = len(words) if self.max_labels is None else self.max_labels
        lo = min(self.min_labels, hi)
        more = f'("," " "? label){{{max(lo - 1, 0)},{max(hi - 1, 0)}}}'
        body = f'label {more}' if lo >= 1 else f'(label {more})?'
        return (f'root ::= "{{\\"labels\\": [" {body} "]}}"\n' if hi > 0 else 'root ::= "{\\"labels\\": []}"\n') + (
            f"label ::= {alts}\n" if hi > 0 else "")

    def _names(self, raw: str) -> list[Any] | str:
        for pattern, key in ((_OBJ, True), (_LIST, False)):
            m = pattern.search(raw)
            if not m:
                continue
            try:
                obj = json.loads(m.group(0))
            except json.JSONDecodeError:
                continue
            value = obj.get("labels") if key and isinstance(obj, dict) else obj
            if isinstance(value, list):
                return value
            if key and isinstance(obj, dict):
                return "JSON answer has no labels list"
        text = raw.strip().strip("`").strip()
        return [] if not text or text.lower() in ("none", "[]") else [p for p in re.split(r"[;,\n]", text) if p.strip()]

    def canonical(self, names: Sequence[Any]) -> list[str]:
        """Each name as the set spells it (matched case-insensitively, quotes and a full stop stripped); a name
        outside the set stays as given, for `check` to name."""
        lower = {lab.lower(): lab for lab in self.labels}
        return [lower.get(str(n).strip().strip("\"'.").lower(), str(n)) for n in names]

    def check(self, value: Any, text: str) -> str | None:
        seen: set[str] = set()
        for lab in value:
            if lab not in self.labels:
                return f"label {str(lab)[:60]!r} is not one of: {one_of(self.labels)}"
            if lab in seen:
                return f"label {lab!r} is named twice; give each label once"
            seen.add(lab)
        if len(value) < self.min_labels:
            return f"{len(value)} labels where the task asks for at least {self.min_labels} (task.min_labels)"
        if self.max_labels is not None and len(value) > self.max_labels:
            return f"{len(value)} labels where the task allows at most {self.max_labels} (task.max_labels)"
        return None

    def parse(self, raw: str, text: str) -> Parsed:
        names = self._names(raw)
        if isinstance(names, str):
            return Parsed(None, names)
        out = self.canonical(names)
        error = self.check(out, text)
        if error:
            return Parsed(None, error)
        return Parsed(tuple(sorted(out, key=self.labels.index)))

    def calibration_group(self, element: str) -> str:
        return element

    def calibration_groups(self) -> tuple[str, ...]:
        return tuple(f"label {lab}" for lab in self.labels)

    def encode(self, value: Any) -> str | None:
        return None if value is None else json.dumps(list(value), ensure_ascii=False)

    def decode(self, stored: str | None) -> Any:
        if stored is None:
            return None
        try:
            names = json.loads(stored)
        except json.JSONDecodeError:
            names = None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"stored labels {stored[:60]!r} are not a JSON list of label names")
        return tuple(sorted(names, key=lambda n: (self.labels.index(n) if n in self.labels else len(self.labels), n)))

    def elements(self, value: Any) -> tuple[str, ...]:
        return tuple(f"label {lab}" for lab in value or ())

    def agreement(self, a: Any, b: Any) -> float:
        """Jaccard similarity of the two label sets (two empty sets agree)."""
        sa, sb = set(a or ()), set(b or ())
        return 1.0 if not sa | sb else len(sa & sb) / len(sa | sb)

    def evaluate(self, truth: Sequence[Any], pred: Sequence[Any], *, n_boot: int, seed: int) -> dict[str, Any]:
        import numpy as np
        from sklearn import metrics as skm
        from sklearn.preprocessing import MultiLabelBinarizer

        from labeler.evaluate.intervals import boot_items, from_samples
        from labeler.tasktypes.scores import LEVEL, prf_table

        if len(truth) != len(pred) or not truth:
            raise ValueError("truth and pred must have the same, non-zero length")
        mlb = MultiLabelBinarizer(classes=list(self.labels))
        t = mlb.fit_transform([tuple(x or ()) for x in truth])
        p = mlb.transform([tuple(x or ()) for x in pred])
        tp, fp, fn = t & p, (1 - t) & p, t & (1 - p)
        table = prf_table(tp, fp, fn, self.labels, n_boot=n_boot, seed=seed)
        # Hamming loss, subset accuracy and cardinalities are item means: one weighted mean per resample
        per_item = np.stack([(t != p).mean(1), (t == p).all(1), t.sum(1), p.sum(1)], axis=1).astype(float)
        n = len(truth)
        boot = boot_items(n, lambda w: (w @ per_item) / n, n_boot=n_boot, seed=seed + 1)
        point = {
            "hamming_loss": float(skm.hamming_loss(t, p)),
            "subset_accuracy": float(skm.accuracy_score(t, p)),
            "cardinality_human": float(t.sum(1).mean()),
            "cardinality_llm": float(p.sum(1).mean()),
        }
        extra = {k: from_samples(v, boot[:, i], LEVEL).to_dict() for i, (k, v) in enumerate(point.items())}
        return {"n": n, "labels": list(self.labels), **table, **extra}
