"""Parsing answers: a lenient but never guessing label match, verbalized confidence, and label
probabilities from synthetic token logprobs with hand-computed expected values."""

from __future__ import annotations

import math

import pytest
from fakes import tok

from labeler.label.parse import label_probs, match_label, parse_choice, parse_text
from labeler.types import Choice, TokenLogprob

SENTIMENT = ("positive", "negative", "neutral")
TOPICS = ("sport", "business", "sci/tech")


@pytest.mark.parametrize(
    ("raw", "labels", "want"),
    [
        ("positive", SENTIMENT, "positive"),
        ("Positive", SENTIMENT, "positive"),
        ("NEGATIVE", SENTIMENT, "negative"),
        ("  neutral \n", SENTIMENT, "neutral"),
        ('"positive"', SENTIMENT, "positive"),
        ("'negative'", SENTIMENT, "negative"),
        ("`neutral`", SENTIMENT, "neutral"),
        ("positive.", SENTIMENT, "positive"),
        ("**Negative**", SENTIMENT, "negative"),
        ("Label: positive", SENTIMENT, "positive"),
        ("answer = negative", SENTIMENT, "negative"),
        ("Category - neutral", SENTIMENT, "neutral"),
        ('{"label": "negative"}', SENTIMENT, "negative"),
        ('Sure! {"label": "Neutral."}', SENTIMENT, "neutral"),
        ('{"answer": "positive"}', SENTIMENT, "positive"),
        ("pos", SENTIMENT, "positive"),  # an unambiguous prefix
        ("neg", SENTIMENT, "negative"),
        ("sport news", TOPICS, "sport"),  # starts with exactly one label
        ("sci/tech", TOPICS, "sci/tech"),
        ("Sci/Tech.", TOPICS, "sci/tech"),
        ("ne", SENTIMENT, None),  # a prefix of negative and neutral: ambiguous
        ("positive or negative", SENTIMENT, None),  # names two labels
        ("negative, maybe neutral", SENTIMENT, None),
        ("banana", SENTIMENT, None),
        ("", SENTIMENT, None),
        ("   ", SENTIMENT, None),
        ("the answer is positive", SENTIMENT, None),  # no guessing inside prose
    ],
)
def test_label_leniency(raw: str, labels: tuple[str, ...], want: str | None) -> None:
    label, _, error = parse_text(raw, labels)
    assert label == want
    assert (error is None) == (want is not None)
    if not raw.lstrip().startswith(("{", "Sure")):
        assert match_label(raw, labels) == want


def test_a_label_that_contains_another_is_not_ambiguous() -> None:
    labels = ("spam", "not spam")
    assert match_label("not spam", labels) == "not spam"
    assert match_label("Not spam, clearly", labels) == "not spam"
    assert match_label("spam", labels) == "spam"


@pytest.mark.parametrize(
    ("raw", "label", "error_part"),
    [
        ("banana", None, "'banana' is not one of the labels"),
        ('{"label": "banana"}', None, "'banana' is not in the label set"),
        ('{"confidence": 0.9}', None, "no label field"),
        ("", None, "empty answer"),
        ('{"label": "positive", "confid', "positive", None),  # JSON cut off by max_tokens
        ('{"label": "posi', None, "not one of the labels"),  # cut off inside the value
    ],
)
def test_parse_text_errors(raw: str, label: str | None, error_part: str | None) -> None:
    got_label, _, error = parse_text(raw, SENTIMENT)
    assert got_label == label
    if error_part is None:
        assert error is None
    else:
        assert error is not None and error_part in error


@pytest.mark.parametrize(
    ("confidence", "want"),
    [
        ("0.8", 0.8),
        ("0.05", 0.05),
        ("1", 1.0),
        ("0", 0.0),
        ('"80"', 0.8),  # a percentage as a string
        ("80", 0.8),
        ("100", 1.0),
        ("-0.2", None),
        ("150", None),
        ('"high"', None),
        ("true", None),
        ("null", None),
        ("[0.5]", None),
    ],
)
def test_verbalized_confidence(confidence: str, want: float | None) -> None:
    label, verbalized, error = parse_text(f'{{"label": "positive", "confidence": {confidence}}}', SENTIMENT)
    assert label == "positive" and error is None
    if want is None:
        assert verbalized is None
    else:
        assert verbalized == pytest.approx(want)


def test_bare_label_probs_renormalised_over_the_label_set() -> None:
    # the realised token is "positive"; the top alternatives include a non-label ("The")
    tokens = [tok("positive", 0.6, {"positive": 0.6, "negative": 0.2, "The": 0.1, "neutral": 0.05})]
    probs = label_probs(tokens, SENTIMENT, json_answer=False)
    assert probs == pytest.approx({"positive": 0.6 / 0.85, "negative": 0.2 / 0.85, "neutral": 0.05 / 0.85})


def test_bare_label_split_into_pieces_and_case_and_leading_space() -> None:
    # "Pos"+"itive": the first piece is a prefix of one label only; " neg" has a leading space
    tokens = [
        tok("Pos", 0.5, {"Pos": 0.5, " neg": 0.3, "ne": 0.2}),
        tok("itive", 0.9, {"itive": 0.9, "ition": 0.1}),
    ]
    probs = label_probs(tokens, SENTIMENT, json_answer=False)
    # "ne" is a prefix of two labels and is not the realised token: its mass is split evenly
    assert probs == pytest.approx({"positive": 0.5, "negative": 0.3 + 0.1, "neutral": 0.1})


def test_a_leading_space_token_is_skipped() -> None:
    # the grammar allows one space before the label: the label's distribution is at the next token
    tokens = [tok(" ", 0.9, {" ": 0.9, "s": 0.1}), tok("sport", 0.7, {"sport": 0.7, "business": 0.3})]
    assert label_probs(tokens, TOPICS, json_answer=False) == pytest.approx(
        {"sport": 0.7, "business": 0.3, "sci/tech": 0.0}
    )


def test_json_answer_whose_value_starts_mid_token() -> None:
    # {"label": "positive"} tokenised so that one token is ' "pos' (the quote and the value's start)
    tokens = [
        tok('{"', 1.0),
        tok("label", 1.0),
        tok('":', 1.0),
        tok(' "pos', 0.5, {' "pos': 0.5, ' "neg': 0.3, ' "neu': 0.1, " pos": 0.1}),
        tok("itive", 1.0),
        tok('"}', 1.0),
    ]
    probs = label_probs(tokens, SENTIMENT, json_answer=True)
    # ' pos' lacks the quote that precedes the value, so it is not an alternative for the value
    assert probs == pytest.approx({"positive": 0.5 / 0.9, "negative": 0.3 / 0.9, "neutral": 0.1 / 0.9})


def test_json_answer_whose_value_starts_on_a_token_boundary() -> None:
    tokens = [
        tok('{"label": "', 1.0),
        tok("neg", 0.25, {"pos": 0.75, "neg": 0.25}),
        tok("ative", 1.0),
        tok('", "confidence": 0.4}', 1.0),
    ]
    probs = label_probs(tokens, SENTIMENT, json_answer=True)
    assert probs == pytest.approx({"positive": 0.75, "negative": 0.25, "neutral": 0.0})
    assert label_probs(tokens[:1], SENTIMENT, json_answer=True) is None  # the value never starts
    assert label_probs([tok("negative", 1.0)], SENTIMENT, json_answer=True) is None  # no JSON at all


def test_labels_sharing_a_first_token_walk_the_realised_path() -> None:
    labels = ("neg_strong", "neg_weak", "pos")
    tokens = [
        tok("neg", 0.6, {"neg": 0.6, "pos": 0.4}),
        tok("_strong", 0.75, {"_strong": 0.75, "_weak": 0.25}),
    ]
    probs = label_probs(tokens, labels, json_answer=False)
    # P(neg_strong) = 0.6 * 0.75, P(neg_weak) = 0.6 * 0.25, P(pos) = 0.4
    assert probs == pytest.approx({"neg_strong": 0.45, "neg_weak": 0.15, "pos": 0.4})


def test_shared_first_token_walks_the_path_inside_json() -> None:
    labels = ("World", "World Sports", "Business")
    tokens = [
        tok('{"label": "', 1.0),
        tok("World", 0.8, {"World": 0.8, "Business": 0.2}),
        tok(" Sports", 0.3, {'"}': 0.7, " Sports": 0.3}),
    ]
    probs = label_probs(tokens, labels, json_answer=True)
    # after "World", '"}' ends the value (World) with 0.7 and " Sports" continues it with 0.3
    assert probs == pytest.approx({"World": 0.8 * 0.7, "World Sports": 0.8 * 0.3, "Business": 0.2})


def test_no_logprobs_or_nothing_about_labels_gives_none() -> None:
    assert label_probs(None, SENTIMENT, json_answer=False) is None
    assert label_probs((), SENTIMENT, json_answer=False) is None
    assert label_probs([tok("Hmm", 0.9, {"Hmm": 0.9, "Well": 0.1})], SENTIMENT, json_answer=False) is None


def test_without_top_alternatives_the_realised_token_counts() -> None:
    tokens = [TokenLogprob("negative", math.log(0.4))]
    assert label_probs(tokens, SENTIMENT, json_answer=False) == {"positive": 0.0, "negative": 1.0, "neutral": 0.0}


def test_parse_choice_combines_label_confidence_and_probs() -> None:
    tokens = (tok("neutral", 0.5, {"neutral": 0.5, "positive": 0.25, "negative": 0.25}),)
    answer = parse_choice(Choice("Neutral", logprobs=tokens), SENTIMENT, json_answer=False)
    assert answer.label == "neutral" and answer.raw == "Neutral" and answer.error is None
    assert answer.label_probs == pytest.approx({"positive": 0.25, "negative": 0.25, "neutral": 0.5})
    bad = parse_choice(Choice("no idea", logprobs=tokens), SENTIMENT, json_answer=False)
    assert bad.label is None and bad.label_probs is None and bad.raw == "no idea"
    assert bad.error is not None and "'no idea' is not one of the labels" in bad.error
