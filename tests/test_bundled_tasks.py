"""The bundled multi-label and span example tasks (prompts/entity_kinds, prompts/ner) and their corpora.

The data files are well-formed for their task: ids unique, every label or entity type in the task's set,
every span's text equal to item_text[start:end] (code points) and no two spans overlapping, the counts and
distributions the README states; the configs load and both templates render for an item. No network: the
data were built by eval/make_conll_corpora.py, which these tests do not run.
"""

from __future__ import annotations

import collections
import csv
import json
import re
from pathlib import Path

import pytest

from labeler.config import TaskConfig, load_config
from labeler.label.profiles import profile_for
from labeler.label.prompts import load_template, render, template_vars
from labeler.tasktypes.registry import for_task

ROOT = Path(__file__).resolve().parents[1]
NER = ROOT / "prompts" / "ner" / "task.toml"
KINDS = ROOT / "prompts" / "entity_kinds" / "task.toml"


def _rows(task: TaskConfig) -> list[dict[str, str]]:
    assert task.input_path is not None
    with task.input_path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _bundled_paragraph() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"\*\*Bundled examples\*\*(.*?)(?:\n\n|\Z)", readme, re.DOTALL)
    assert m, "README: the Task types section has no **Bundled examples** paragraph"
    return " ".join(m.group(1).split())


@pytest.fixture(scope="module")
def ner() -> tuple[TaskConfig, list[dict[str, str]]]:
    task = load_config(NER, env={})
    return task, _rows(task)


@pytest.fixture(scope="module")
def kinds() -> tuple[TaskConfig, list[dict[str, str]]]:
    task = load_config(KINDS, env={})
    return task, _rows(task)


def test_configs_are_the_two_task_types(ner, kinds) -> None:
    assert ner[0].kind.type == "spans" and not ner[0].kind.allow_overlap
    assert ner[0].label_names == ("PER", "ORG", "LOC", "MISC")
    assert kinds[0].kind.type == "multi_label"
    assert (kinds[0].kind.min_labels, kinds[0].kind.max_labels) == (1, 4)
    assert kinds[0].label_names == ("person", "organization", "location", "misc")


@pytest.mark.parametrize("which", ["ner", "kinds"])
def test_ids_unique_and_texts_present(which, request) -> None:
    task, rows = request.getfixturevalue(which)
    assert list(rows[0]) == ["id", task.text_column, task.gold_column]
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids)
    assert all(r["text"].strip() for r in rows)


def test_spans_align_with_the_text_and_never_overlap(ner) -> None:
    task, rows = ner
    types = set(task.label_names)
    kind = for_task(task)
    n_spans = 0
    for r in rows:
        text, spans = r["text"], json.loads(r["label"])
        assert isinstance(spans, list) and spans, r["id"]
        prev_end = 0
        for s in spans:  # in text order, each inside the text, its text exactly the slice
            assert set(s) == {"start", "end", "type", "text"}, r["id"]
            assert s["type"] in types, (r["id"], s)
            assert prev_end <= s["start"] < s["end"] <= len(text), (r["id"], s)
            assert text[s["start"] : s["end"]] == s["text"], (r["id"], s)
            assert s["text"] == s["text"].strip(), (r["id"], s)
            prev_end = s["end"]
        decoded = kind.decode(r["label"])  # the task type reads the gold cell as it stores annotations
        assert [(d.start, d.end, d.type) for d in decoded] == [(s["start"], s["end"], s["type"]) for s in spans]
        n_spans += len(spans)
    assert n_spans > len(rows)


Triples = list[tuple[int, int, str]]


def _quoted_back(kind, row: dict[str, str]) -> tuple[Triples, Triples, str | None]:
    """(gold spans, the spans a perfect answer quoting them aligns to, the parse error) of one story."""
    gold = kind.decode(row["label"])
    answer = json.dumps({"spans": [{"text": s.text, "type": s.type} for s in gold]})
    got = kind.parse(answer, row["text"])
    return [(s.start, s.end, s.type) for s in gold], [(s.start, s.end, s.type) for s in got.value or ()], got.error


def _unambiguous(row: dict[str, str]) -> bool:
    """Every name occurs in the story exactly as often as it is marked, and none is part of another."""
    names = [s["text"] for s in json.loads(row["label"])]
    return all(row["text"].count(n) == names.count(n) for n in names) and not any(
        a != b and a in b for a in names for b in names)


def test_a_perfect_answer_parses_back_to_the_gold_spans(ner) -> None:
    task, rows = ner
    kind = for_task(task)
    clear = [r for r in rows if _unambiguous(r)]
    assert len(clear) > len(rows) / 2
    for r in clear:
        gold, got, error = _quoted_back(kind, r)
        assert error is None and got == gold, r["id"]


def test_a_perfect_answer_is_never_refused(ner) -> None:
    """(Two more stories mark only some occurrences of a repeated name, which a quote cannot say; those parse,
    to other offsets, and are left out of test_a_perfect_answer_parses_back_to_the_gold_spans.)"""
    task, rows = ner
    kind = for_task(task)
    refused = [(r["id"], error) for r in rows if (error := _quoted_back(kind, r)[2]) is not None]
    assert refused == []


def test_multi_labels_are_in_the_label_set(kinds) -> None:
    task, rows = kinds
    kind = for_task(task)
    for r in rows:
        names = r["label"].split(";")
        assert len(names) == len(set(names)), r["id"]
        assert all(n in task.label_names for n in names), r["id"]
        got = kind.parse(json.dumps({"labels": names}), r["text"])  # within min_labels..max_labels
        assert got.error is None and set(got.value) == set(names), r["id"]


def test_readme_states_the_measured_counts(ner, kinds) -> None:
    para = _bundled_paragraph()
    ner_rows, kind_rows = ner[1], kinds[1]
    types = collections.Counter(s["type"] for r in ner_rows for s in json.loads(r["label"]))
    assert f"{len(ner_rows)} stories" in para
    assert f"{sum(types.values()):,} spans" in para
    for t, n in types.items():
        assert f"{t} {n}" in para, t
    labels = collections.Counter(n for r in kind_rows for n in r["label"].split(";"))
    card = collections.Counter(len(r["label"].split(";")) for r in kind_rows)
    assert f"{len(kind_rows)} sentences" in para
    for name, n in labels.items():
        assert f"{name} {n}" in para, name
    assert f"{card[1]} with one kind, {card[2]} with two, {card[3] + card[4]} with three or four" in para


@pytest.mark.parametrize("which", ["ner", "kinds"])
def test_both_templates_render_an_item(which, request) -> None:
    task, rows = request.getfixturevalue(which)
    member = task.primary
    assert member.completion_template is not None
    variables = template_vars(task, profile_for(member.endpoint), rows[0]["text"])
    for path in (member.template, member.completion_template):
        messages = render(load_template(path), variables)
        assert rows[0]["text"] in messages[-1].content
        assert all(name in "".join(m.content for m in messages) for name in task.label_names)
