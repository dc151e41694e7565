"""Answer words (a verbalizer): several words may mean one label; the constraint offers the words, the
logprob confidence sums a label's words, and the stored label is the label. Known answers throughout."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import FakeBackend, completion, tok, write_task
from test_runner import make_task, results, run

from labeler.config import load_config
from labeler.errors import ConfigError
from labeler.label.parse import parse_choice, sum_by_label
from labeler.label.prompts import RequestBuilder, label_grammar
from labeler.types import Choice

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
