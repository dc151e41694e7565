"""Multi-label and span tasks on the real embedded model (llama-server with Gemma-3-270M, issue 19): five items
each, asked through the type's GBNF grammar, give well-formed annotations (names from the label set; spans
whose offsets index the item text and whose types are the task's). Skipped when `labeler setup` has not
built the server and the model."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from fakes import write_csv, write_task

from labeler.config import load_config
from labeler.label.local import model_file, server_binary
from labeler.label.pipeline import start_run
from labeler.store import RunStore

pytestmark = [pytest.mark.local_model, pytest.mark.integration]

if os.environ.get("LABELER_SKIP_LOCAL") == "1":
    pytest.skip("LABELER_SKIP_LOCAL=1", allow_module_level=True)

TEMPLATE = """\
{% if task_type == "multi_label" %}Topics: {{ label_names | join(", ") }}.
Text: Stocks fell as the minister resigned.
Answer: {"labels": ["business", "politics"]}
{% else %}Entity types: {% for lab in labels %}{{ lab.name }} ({{ lab.description }}){% if not loop.last %}, \
{% endif %}{% endfor %}.
Text: Angela Merkel visited Paris.
Answer: {"spans": [{"text": "Angela Merkel", "type": "PER"}, {"text": "Paris", "type": "LOC"}]}
{% endif %}
Text: {{ text }}
Answer: """

TEXTS = [
    "The striker scored twice as the club won the cup final.",
    "Parliament voted on the new budget and tax plans for companies.",
    "A new smartphone chip makes games run faster.",
    "Shares in the bank rose after strong profits.",
    "The prime minister watched the football match in London.",
]
SPAN_TEXTS = [
    "Ada Lovelace lived in London.",
    "Zoë moved from Köln to Berlin.",
    "Microsoft hired John Smith.",
    "The meeting in Paris\r\nended late.",
    "Nothing to see here 🎉.",
]


@pytest.fixture(autouse=True)
def _needs_setup() -> None:
    if server_binary() is None or model_file("gemma3-270m") is None:
        pytest.skip("the embedded model is not set up: run `labeler setup`")


def _run(tmp_path: Path, task_table: dict, labels: tuple[str, ...], texts: list[str], tokens: int) -> RunStore:
    write_csv(tmp_path / "items.csv", [{"id": f"i{n}", "text": t} for n, t in enumerate(texts, 1)])
    model = {"base_url": "local", "model": "gemma3-270m", "max_output_tokens": tokens, "concurrency": 1,
             "timeout": 120}
    config = write_task(tmp_path, labels=labels, model=model, task=task_table, template=TEMPLATE,
                        sections={"confidence": {"methods": ["logprob"]}})
    task = load_config(config, env={})
    run_dir, summary = asyncio.run(start_run(task, run_dir=tmp_path / "run", show_progress=False))
    assert sum(summary.counts.values()) == len(texts)
    return RunStore.open(run_dir)


def test_multi_label_through_the_grammar_gives_label_sets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABELER_CACHE", str(tmp_path / "cache.sqlite"))
    labels = ("business", "politics", "sport", "tech")
    store = _run(tmp_path, {"type": "multi_label", "max_labels": 2}, labels, TEXTS, 40)
    try:
        rows = list(store.iter_results())
    finally:
        store.close()
    labeled = [r for r in rows if r["status"] == "labeled"]
    print("multi_label:", [(r["text"][:30], r["label"], r["reason"]) for r in rows])  # what it said, with -s
    assert len(labeled) == len(TEXTS), [r["reason"] for r in rows]
    for r in labeled:
        names = json.loads(r["label"])
        assert isinstance(names, list) and len(names) <= 2 and set(names) <= set(labels)
        assert len(set(names)) == len(names)


def test_spans_through_the_grammar_give_offsets_into_the_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABELER_CACHE", str(tmp_path / "cache.sqlite"))
    types = ("PER", "LOC", "ORG")
    store = _run(tmp_path, {"type": "spans"}, types, SPAN_TEXTS, 120)
    try:
        rows = list(store.iter_results())
    finally:
        store.close()
    labeled = [r for r in rows if r["status"] == "labeled"]
    print("spans:", [(r["text"][:30], r["label"], r["dropped"], r["reason"]) for r in rows])  # with -s
    assert len(labeled) >= 4, [(r["reason"], r["raw"]) for r in rows]  # at most one may fail (overlap, cut off)
    for r in labeled:
        for s in json.loads(r["label"]):
            assert s["type"] in types and 0 <= s["start"] < s["end"] <= len(r["text"])
            assert r["text"][s["start"]:s["end"]] == s["text"]
