"""The constraints of a single-label answer: the llama.cpp GBNF grammar and the OpenAI json_schema
`response_format` that admit exactly the label set (the task type single; labeler.tasktypes.single)."""

from __future__ import annotations

import json
from typing import Any


def _gbnf_literal(s: str) -> str:
    return json.dumps(s)  # GBNF string literals take JSON-style escapes


def label_grammar(labels: tuple[str, ...], answer: str, verbalized: bool) -> str:
    alts = " | ".join(_gbnf_literal(name) for name in labels)
    if answer == "label":
        return f'root ::= " "? ({alts})\n'
    conf = ' ", \\"confidence\\": " num' if verbalized else ""
    return (
        f'root ::= "{{\\"label\\": \\"" label "\\""{conf} "}}"\n'
        f"label ::= {alts}\n"
        'num ::= ("0" ("." [0-9] [0-9]?)?) | "1" (".0")?\n'
    )


def json_schema(labels: tuple[str, ...], verbalized: bool) -> dict[str, Any]:
    props: dict[str, Any] = {"label": {"type": "string", "enum": list(labels)}}
    required = ["label"]
    if verbalized:
        props["confidence"] = {"type": "number", "minimum": 0, "maximum": 1}
        required.append("confidence")
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "label_answer",
            "strict": True,
            "schema": {"type": "object", "properties": props, "required": required, "additionalProperties": False},
        },
    }
