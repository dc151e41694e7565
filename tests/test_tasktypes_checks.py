"""One check per task type (`TaskType.check`), worded once and used by parse and the review import; and the
quote found only inside another quoted span, dropped and counted where the task forbids overlap."""

from __future__ import annotations

import json

import pytest

from labeler.errors import ReviewError
from labeler.review.tasktype_formats import check_value
from labeler.tasktypes.registry import task_type
from labeler.tasktypes.spans import Span

TEXT = "Ada met them in New York."  # "New York" at 16-24, "York" at 20-24


def answer(*spans: dict) -> str:
    return json.dumps({"spans": list(spans)})


def test_a_quote_only_inside_another_is_dropped_and_the_rest_kept() -> None:
    sp = task_type("spans", ("PER", "LOC"))
    got = sp.parse(answer({"text": "York", "type": "LOC"}, {"text": "New York", "type": "PER"},
                          {"text": "Ada", "type": "PER"}), TEXT)
    assert got.error is None and got.dropped == 1
    assert got.value == (Span(0, 3, "PER", "Ada"), Span(16, 24, "PER", "New York"))
    # inside a span stated by offsets: dropped too
    got = sp.parse(answer({"start": 16, "end": 24, "type": "LOC"}, {"text": "York", "type": "LOC"}), TEXT)
    assert (got.error, got.dropped, got.value) == (None, 1, (Span(16, 24, "LOC", "New York"),))
    # where the quote occurs also outside the longer name, it takes that occurrence instead
    got = sp.parse(answer({"text": "York", "type": "LOC"}, {"text": "New York", "type": "PER"}), TEXT + " York!")
    assert got.dropped == 0 and Span(26, 30, "LOC", "York") in got.value
    # a task that allows overlap keeps the nested span
    nested = task_type("spans", ("PER", "LOC"), allow_overlap=True)
    got = nested.parse(answer({"text": "York", "type": "LOC"}, {"text": "New York", "type": "PER"}), TEXT)
    assert (got.dropped, got.value) == (0, (Span(16, 24, "PER", "New York"), Span(20, 24, "LOC", "York")))


def test_an_overlap_stated_by_offsets_is_still_one_line() -> None:
    sp = task_type("spans", ("PER", "LOC"))
    got = sp.parse(answer({"start": 16, "end": 24, "type": "PER"}, {"start": 20, "end": 24, "type": "LOC"}), TEXT)
    assert got.value is None and got.error == (
        "spans 16-24 'New York' and 20-24 'York' overlap; the task forbids overlapping spans (task.allow_overlap)")
    same = sp.parse(answer({"start": 0, "end": 3, "type": "PER"}, {"start": 0, "end": 3, "type": "PER"}), TEXT)
    assert same.value == (Span(0, 3, "PER", "Ada"),)  # one span stated twice by the model counts once
    assert sp.parse(answer({"start": "0", "end": 3, "type": "PER"}), TEXT).error == (
        "span offsets '0'-3 are not whole numbers")


@pytest.mark.parametrize(
    ("kind", "value", "error"),
    [
        (("single", ("a", "b")), "c", "label 'c' is not one of: a, b"),
        (("single", ("a", "b")), "a", None),
        (("multi_label", ("a", "b", "c"), 1, 2), ["a", "x"], "label 'x' is not one of: a, b, c"),
        (("multi_label", ("a", "b", "c"), 1, 2), ["a", "a"], "label 'a' is named twice; give each label once"),
        (("multi_label", ("a", "b", "c"), 1, 2), [], "0 labels where the task asks for at least 1 (task.min_labels)"),
        (("multi_label", ("a", "b", "c"), 1, 2), ["a", "b", "c"],
         "3 labels where the task allows at most 2 (task.max_labels)"),
        (("multi_label", ("a", "b", "c"), 1, 2), ["c", "a"], None),
        (("spans", ("PER",)), [Span(0, 3, "ORG")], "span type 'ORG' is not one of: PER"),
        (("spans", ("PER",)), [Span(0, 99, "PER")], f"span 0-99 lies outside the text (0-{len(TEXT)})"),
        (("spans", ("PER",)), [Span(0, 3, "PER", "Bob")], "span 0-3 quotes 'Bob' but the text there is 'Ada'"),
        (("spans", ("PER",)), [Span(0, 3, "PER"), Span(0, 3, "PER", "Ada")],
         "span 0-3 PER 'Ada' is named twice; give each span once"),
        (("spans", ("PER",)), [Span(0, 3, "PER", "Ada"), Span(16, 24, "PER")], None),
    ],
)
def test_one_wording_per_rule(kind: tuple, value: object, error: str | None) -> None:
    name, labels, *bounds = kind
    tt = task_type(name, labels, **dict(zip(("min_labels", "max_labels"), bounds, strict=False)))
    assert tt.check(value, TEXT) == error


def test_parse_and_review_import_say_the_same() -> None:
    """The review import adds only where the answer is (and, for offsets, the UTF-16 hint)."""
    ml = task_type("multi_label", ("a", "b", "c"), min_labels=1, max_labels=2)
    sp = task_type("spans", ("PER", "LOC"))
    for kind, raw, stored in [
        (ml, '{"labels": ["a", "x"]}', '["a", "x"]'),
        (ml, '{"labels": ["a", "A"]}', '["a", "A"]'),
        (ml, '{"labels": []}', "[]"),
        (sp, answer({"text": "Ada", "type": "DATE"}), '[{"text": "Ada", "type": "DATE"}]'),
        (sp, answer({"start": 16, "end": 24, "type": "PER"}, {"start": 20, "end": 24, "type": "LOC"}),
         '[{"start": 16, "end": 24, "type": "PER"}, {"start": 20, "end": 24, "type": "LOC"}]'),
    ]:
        error = kind.parse(raw, TEXT).error
        assert error is not None
        with pytest.raises(ReviewError) as exc:
            check_value(kind, stored, TEXT, where="row 1 (id t00)")
        assert str(exc.value) == f"row 1 (id t00): {error}"
    with pytest.raises(ReviewError) as exc:
        check_value(sp, '[{"start": 99, "end": 100, "type": "PER"}]', TEXT, where="x")
    assert str(exc.value).startswith(f"x: span 99-100 lies outside the text (0-{len(TEXT)}); offsets count code points")
    # a human's quote found only inside another span is not dropped silently: the overlap is named
    with pytest.raises(ReviewError, match=r"^x: spans 16-24 'New York' and 20-24 'York' overlap"):
        check_value(sp, '[{"text": "New York", "type": "LOC"}, {"text": "York", "type": "LOC"}]', TEXT, where="x")
