"""Answer words (a verbalizer): several words may mean one label; the constraint offers the words, the
logprob confidence sums a label's words, and the stored label is the label. Known answers throughout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import FakeBackend, completion, tok, write_task
from test_multi import is_multi, items_of
from test_runner import make_task, results, run

from labeler.config import TaskConfig, load_config
from labeler.errors import ConfigError
from labeler.label.multi import MultiBuilder
from labeler.label.parse import parse_choice, sum_by_label
from labeler.label.prompts import RequestBuilder, label_grammar
from labeler.types import Choice, Request, TokenLogprob

LABELS = ("business", "sport", "tech")
ANSWERS = {"business": ["money", "markets"], "sport": "games"}  # tech answers with its own name
WORDS = (("money", "business"), ("markets", "business"), ("games", "sport"), ("tech", "tech"))


def test_answers_parse_in_label_order_with_unnamed_labels_answering_their_own_name(tmp_path: Path) -> None:
    task = load_config(write_task(tmp_path, task={"answers": ANSWERS}), env={})
    assert task.quality.answers == WORDS


@pytest.mark.parametrize(
    ("answers", "named"),
    [
        ({"finance": ["money"]}, "finance"),  # not a label
        ({"business": ["money"], "sport": ["Money"]}, "'Money'"),  # one word, two labels
        ({"business": []}, "task.answers.business"),
        ({"business": [3]}, "task.answers.business"),
    ],
)
def test_bad_answers_are_config_errors_naming_the_problem(tmp_path: Path, answers: object, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_config(write_task(tmp_path, task={"answers": answers}), env={})


def test_the_schema_and_the_grammar_offer_the_words(tmp_path: Path) -> None:
    task = load_config(write_task(tmp_path, task={"answers": ANSWERS}), env={})
    request = RequestBuilder.for_member(task, task.primary).build("a text")
    assert request.response_format is not None
    enum = request.response_format["json_schema"]["schema"]["properties"]["label"]["enum"]
    assert enum == ["money", "markets", "games", "tech"]
    assert label_grammar(("money", "games"), "label", False) == 'root ::= " "? ("money" | "games")\n'


def test_word_probabilities_are_summed_per_label() -> None:
    probs = sum_by_label({"money": 0.3, "markets": 0.2, "games": 0.4, "tech": 0.1}, WORDS, LABELS)
    assert probs == pytest.approx({"business": 0.5, "sport": 0.4, "tech": 0.1})


def test_a_word_answer_is_stored_as_its_label_with_summed_logprob_mass() -> None:
    top = {"money": 0.3, "markets": 0.2, "games": 0.4, "tech": 0.1}
    logprobs = (tok('{"label": "', 1.0), tok("money", 0.3, top), tok('"}', 1.0))
    answer = parse_choice(Choice('{"label": "money"}', logprobs), LABELS, json_answer=True, answers=WORDS)
    assert answer.label == "business" and answer.error is None
    assert answer.label_probs == pytest.approx({"business": 0.5, "sport": 0.4, "tech": 0.1})
    # a bare answer, and a label's own name where no word spells it
    assert parse_choice(Choice("games"), LABELS, json_answer=False, answers=WORDS).label == "sport"
    assert parse_choice(Choice("Markets."), LABELS, json_answer=False, answers=WORDS).label == "business"
    assert parse_choice(Choice("finance"), LABELS, json_answer=False, answers=WORDS).label is None


def test_examples_render_as_their_labels_first_word(tmp_path: Path) -> None:
    template = "{% for e in examples %}{{ e.text }} => {{ e.label }} ({{ e.name }})\n{% endfor %}{{ text }} =>"
    path = write_task(
        tmp_path,
        template=template,
        task={"answers": ANSWERS, "examples": [{"text": "shares fell", "label": "business"}]},
    )
    task = load_config(path, env={})
    [msg] = RequestBuilder.for_member(task, task.primary).messages("a text")
    assert msg.content.startswith("shares fell => money (business)")


async def test_a_run_with_answer_words_stores_labels(tmp_path: Path) -> None:
    gold = ["business", "sport", "tech"]
    make_task(tmp_path, gold)  # the corpus: item n reads "item n: a short text"
    task = load_config(
        write_task(
            tmp_path,
            model={"base_url": "http://127.0.0.1:9/v1", "model": "test-model"},
            task={"answers": ANSWERS},
            sections={"input": {"gold_column": "gold"}},
        ),
        env={},
    )
    said = {"1": "markets", "2": "games", "3": "tech"}

    def answer(request: object) -> object:
        n = str(request.messages[-1].content).split("item ")[1].split(":")[0]  # type: ignore[attr-defined]
        word = said[n]
        top = {w: (0.7 if w == word else 0.1) for w, _ in WORDS}
        return completion(
            f'{{"label": "{word}"}}', logprobs=[tok('{"label": "', 1.0), tok(word, top[word], top), tok('"}', 1.0)]
        )

    store = await run(task, tmp_path, {"default": FakeBackend(answer)})  # type: ignore[arg-type]
    stored = results(store)
    store.close()
    assert [stored[f"d{n:03d}"]["label"] for n in (1, 2, 3)] == gold
    assert stored["d001"]["confidence"] == pytest.approx(0.8)  # markets 0.7 + money 0.1, renormalised over 1.0


# --- K items a request (labeler.label.multi) honour the words too --------------------------------
def multi_task(root: Path, gold: list[str], **model: object) -> TaskConfig:
    make_task(root, gold)  # the corpus: item n reads "item n: a short text"
    examples = [{"text": "shares fell", "label": "business"}]
    return load_config(
        write_task(
            root,
            model={"base_url": "http://127.0.0.1:9/v1", "model": "test-model", **model},
            task={"answers": ANSWERS, "examples": examples},
            sections={"input": {"gold_column": "gold"}},
        ),
        env={},
    )


def word_answer(pairs: list[tuple[str, str]]) -> tuple[str, list[TokenLogprob]]:
    """{"answers": [...]} answering each id with a word: that word 0.6, the other words 0.4 between them."""
    toks = [tok('{"answers": [', 1.0)]
    for n, (i, word) in enumerate(pairs):
        top = {w: (0.6 if w == word else 0.4 / 3) for w, _ in WORDS}
        toks += [tok((", " if n else "") + f'{{"id": "{i}", "label": "', 1.0), tok(word, 0.6, top), tok('"}', 1.0)]
    toks.append(tok("]}", 1.0))
    return "".join(t.token for t in toks), toks


def test_a_multi_item_prompt_offers_the_words_and_reads_them_as_labels(tmp_path: Path) -> None:
    task = multi_task(tmp_path, ["business"], items_per_request=3)
    multi = MultiBuilder.for_member(task, task.primary)
    assert multi is not None
    request = multi.build(["item 1: a", "item 2: b", "item 3: c"])
    schema = request.response_format["json_schema"]["schema"]  # type: ignore[index]
    assert schema["properties"]["answers"]["items"]["properties"]["label"]["enum"] == [w for w, _ in WORDS]
    system = request.messages[0].content
    assert "one of money, markets, games, tech" in system and '"shares fell" → money' in system
    text, toks = word_answer([("i1", "markets"), ("i2", "games"), ("i3", "tech")])
    a, b, c = multi.parse(Choice(text, tuple(toks)), 3)
    assert [f.answer.label for f in (a, b, c) if f is not None] == ["business", "sport", "tech"]
    assert a is not None and a.answer.label_probs == pytest.approx(
        {"business": 0.6 + 0.4 / 3, "sport": 0.4 / 3, "tech": 0.4 / 3}
    )
    # two words of one label for one item are one answer, not two different ones
    twice = json.dumps({"answers": [{"id": "i1", "label": "money"}, {"id": "i1", "label": "markets"}]})
    [once] = multi.parse(Choice(twice), 1)
    assert once is not None and once.answer.label == "business"


def test_a_multi_item_grammar_offers_the_words(tmp_path: Path) -> None:
    task = multi_task(tmp_path, ["business"], items_per_request=2, profile="gemma3-270m")
    multi = MultiBuilder.for_member(task, task.primary)
    assert multi is not None and multi.answer == "label"
    request = multi.build(["item 1: a", "item 2: b"])
    assert request.grammar is not None and 'label ::= "money" | "markets" | "games" | "tech"' in request.grammar
    assert "shares fell → money" in request.messages[-1].content  # the example answers with its word
    toks = [tok("\n1. item 1: a →", 1.0), tok(" games", 0.7, {" games": 0.7, " money": 0.2, " tech": 0.1})]
    toks += [tok("\n2. item 2: b →", 1.0), tok(" tech", 0.9, {" tech": 0.9, " markets": 0.1})]
    a, b = multi.parse(Choice("".join(t.token for t in toks), tuple(toks)), 2)
    assert (
        a is not None
        and a.answer.label == "sport"
        and a.answer.label_probs == pytest.approx({"business": 0.2, "sport": 0.7, "tech": 0.1})
    )
    assert b is not None and b.answer.label == "tech" and b.answer.label_probs["business"] == pytest.approx(0.1)  # type: ignore[index]


async def test_a_k_item_run_with_answer_words_stores_labels_and_caches_them(tmp_path: Path) -> None:
    gold = ["business", "sport", "tech", "business"]
    said = {1: "markets", 2: "games", 3: "tech", 4: "money"}
    task = multi_task(tmp_path, gold, items_per_request=4, concurrency=1)

    def answer(request: Request) -> object:
        assert is_multi(request), "every item is answered in the one 4-item request"
        text, toks = word_answer([(i, said[n]) for i, n in items_of(request)])
        return completion(text, logprobs=toks)

    fake = FakeBackend(answer)  # type: ignore[arg-type]
    store = await run(task, tmp_path, {"default": fake})
    first = results(store)
    store.close()
    assert fake.calls == 1
    assert [first[f"d{n:03d}"]["label"] for n in range(1, 5)] == gold
    assert first["d001"]["confidence"] == pytest.approx(0.6 + 0.4 / 3)  # markets + money
    assert first["d002"]["confidence"] == pytest.approx(0.6)

    again = FakeBackend(answer)  # type: ignore[arg-type]
    store = await run(task, tmp_path, {"default": again}, run_dir="run2")  # every item from the cache
    second = results(store)
    store.close()
    assert again.calls == 0 and all(r["cached"] == 1 for r in second.values())
    assert {i: r["label"] for i, r in second.items()} == {i: r["label"] for i, r in first.items()}
    assert {i: r["confidence"] for i, r in second.items()} == pytest.approx(
        {i: r["confidence"] for i, r in first.items()}
    )
