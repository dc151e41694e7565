"""The one human-label rule (labeler.humans), on votes whose right answer is known."""

from __future__ import annotations

import pytest

from labeler.humans import HumanLabel, decide


@pytest.mark.parametrize(
    ("votes", "adjudication", "expected"),
    [
        ({}, None, HumanLabel(None, None, False, {})),
        ({"ann": "a"}, None, HumanLabel("a", "human", False, {"ann": "a"})),
        ({"gold": "a"}, None, HumanLabel("a", "gold", False, {"gold": "a"})),
        (
            {"ann": "b", "bob": "b", "gold": "a"},
            None,
            HumanLabel("b", "human", False, {"ann": "b", "bob": "b", "gold": "a"}),
        ),
        # a tie goes to gold when gold is among the tied labels
        ({"gold": "a", "ann": "b"}, None, HumanLabel("a", "human", True, {"gold": "a", "ann": "b"})),
        # else to the earliest answer among the tied labels (votes are in answer order)
        ({"bob": "c", "ann": "b"}, None, HumanLabel("c", "human", True, {"bob": "c", "ann": "b"})),
        (
            {"ann": "b", "bob": "c", "cy": "c", "dee": "b"},
            None,
            HumanLabel("b", "human", True, {"ann": "b", "bob": "c", "cy": "c", "dee": "b"}),
        ),
        # an adjudication wins over everything and settles the tie (the votes stay visible)
        ({"ann": "a", "bob": "b"}, "c", HumanLabel("c", "adjudicated", False, {"ann": "a", "bob": "b"}, "c")),
        ({}, "c", HumanLabel("c", "adjudicated", False, {}, "c")),
    ],
)
def test_decide(votes: dict[str, str], adjudication: str | None, expected: HumanLabel) -> None:
    assert decide(votes, adjudication=adjudication) == expected
