"""Per-element confidence, its ensemble combination and the routing reasons that name elements (issue 19):
pure functions on annotations whose right answers are worked out by hand."""

from __future__ import annotations

import pytest

from labeler.confidence.elements import EMPTY, answer_elements, combine_elements, disputed, item_confidence
from labeler.review.candidates import Candidate, Rules, reason_code, reasons_for
from labeler.tasktypes.registry import task_type
from labeler.tasktypes.spans import Span

ML = task_type("multi_label", ("sport", "politics", "tech"))
SP = task_type("spans", ("PER", "LOC"))


def test_answer_elements_are_the_sample_shares_of_the_answers_elements() -> None:
    samples = [("sport",), ("sport", "tech"), None, ("tech",), ("sport",)]  # None: a sample that did not parse
    assert answer_elements(("sport", "politics"), samples, ML) == {"label sport": 0.75, "label politics": 0.0}
    assert answer_elements((), samples, ML) == {EMPTY: 0.0}
    assert answer_elements((), [(), (), ("tech",)], ML) == pytest.approx({EMPTY: 2 / 3})
    assert answer_elements(("sport",), [None, None], ML) is None
    assert item_confidence({"consistency": {"label sport": 0.75, "label politics": 0.25}}, ["logprob", "consistency"]) \
        == 0.25
    assert item_confidence({}, ["consistency"]) is None


def test_three_members_keep_the_majority_spans_with_mean_confidences() -> None:
    ada, koln, bob = Span(0, 3, "PER", "Ada"), Span(7, 11, "LOC", "Köln"), Span(12, 15, "PER", "Bob")
    members = {
        "a": ((ada, koln), {"span 0-3 PER 'Ada'": 0.8, "span 7-11 LOC 'Köln'": 1.0}),
        "b": ((ada, bob), {"span 0-3 PER 'Ada'": 0.6, "span 12-15 PER 'Bob'": 0.4}),
        "c": ((koln,), None),  # no samples: the element counts 1.0 where it has it
        "d": None,  # failed: does not vote
    }
    row = combine_elements(members, SP, min_vote_share=0.67, max_divergence=0.2, item_id="x")
    assert SP.decode(row.label) == (ada, koln)  # 2 of 3 each; Bob 1 of 3
    assert row.distribution == pytest.approx({"span 0-3 PER 'Ada'": (0.8 + 0.6 + 0) / 3,
                                              "span 7-11 LOC 'Köln'": (1.0 + 0 + 1.0) / 3})
    assert row.confidence == pytest.approx(1.4 / 3)
    assert row.vote_share == pytest.approx(1 / 3)  # only member a gave exactly (Ada, Köln)
    # agreement = exact-match F1: a-b 0.5, a-c 2/3, b-c 0
    assert row.divergence == pytest.approx(1 - (0.5 + 2 / 3 + 0) / 3)
    assert row.disagree and row.member_labels["d"] is None
    assert disputed([(ada, koln), (ada, bob), (koln,)], SP) == [
        "span 0-3 PER 'Ada'", "span 12-15 PER 'Bob'", "span 7-11 LOC 'Köln'"]


def test_empty_annotations_combine_to_the_share_of_empty_members() -> None:
    row = combine_elements({"a": ((), {EMPTY: 0.6}), "b": ((), None), "c": (("tech",), None)}, ML,
                           min_vote_share=0.5, max_divergence=1.0)
    assert row.label == "[]" and row.distribution == pytest.approx({EMPTY: (0.6 + 1.0 + 0.0) / 3})
    lone = combine_elements({"a": (("tech",), None)}, ML, min_vote_share=0.5, max_divergence=1.0)
    assert lone.label == '["tech"]' and lone.distribution == {} and lone.confidence is None


def test_routing_reasons_name_the_doubtful_elements_least_sure_first() -> None:
    rules = Rules(threshold=0.6, min_vote_share=0.67, max_divergence=0.2)
    c = Candidate("i", '["sport", "tech"]', confidence=0.3,
                  elements={"label sport": 0.5, "label tech": 0.3, "label politics": 0.9})
    assert reasons_for(c, rules) == ("low_confidence: label tech 0.30, label sport 0.50",)
    split = Candidate("j", "[]", vote_share=0.5, divergence=0.5, elements={EMPTY: 0.9}, disputed=("label tech",))
    assert reasons_for(split, rules) == ("disagreement: members differ on label tech",)
    assert [reason_code(r) for r in reasons_for(c, rules)] == ["low_confidence"]
    quotes = Candidate("q", "[]", elements={EMPTY: 1.0}, dropped=2)  # sure of what it kept, but it lost two quotes
    assert reasons_for(quotes, rules) == ("dropped_spans: 2 quoted spans not placed",)
    # single-label candidates keep their bare reasons
    assert reasons_for(Candidate("k", "sport", confidence=0.5, vote_share=0.5), rules) == (
        "low_confidence", "disagreement")
