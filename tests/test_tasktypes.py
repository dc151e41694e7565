"""The task-type protocol (issue 19): single, multi_label and spans, on data whose answers are known."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from fakes import write_task
from sklearn import metrics as skm
from sklearn.preprocessing import MultiLabelBinarizer

from labeler.config import load_config
from labeler.errors import ConfigError
from labeler.tasktypes import TaskKind, doubtful, element_shares
from labeler.tasktypes.registry import for_task, task_type
from labeler.tasktypes.spans import Span, align, utf16_offsets

LABELS = ("sport", "politics", "tech", "business")


def test_unknown_type_names_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"task\.type must be one of single, multi_label, spans"):
        task_type("ner", LABELS)


def test_single_keeps_the_pipelines_reading() -> None:
    single = task_type("single", LABELS)
    assert single.parse('{"label": "Sport"}', "").value == "sport"
    assert "not in the label set" in (single.parse('{"label": "cars"}', "").error or "")
    assert single.response_format(LABELS)["json_schema"]["schema"]["properties"]["label"]["enum"] == list(LABELS)


def test_multi_label_parse_and_bad_answers() -> None:
    ml = task_type("multi_label", LABELS, min_labels=1, max_labels=2)
    assert ml.parse('{"labels": ["tech", "Sport"]}', "").value == ("sport", "tech")  # label-set order
    assert ml.parse('["politics"]', "").value == ("politics",)
    assert ml.parse("business; tech", "").value == ("tech", "business")
    assert ml.parse('{"labels": ["cars"]}', "").error == "label 'cars' is not one of: sport, politics, tech, business"
    assert ml.parse('{"labels": []}', "").error == "0 labels where the task asks for at least 1 (task.min_labels)"
    assert ml.parse('{"labels": ["tech", "sport", "business"]}', "").error == (
        "3 labels where the task allows at most 2 (task.max_labels)")
    assert ml.parse('{"labels": ["tech", "tech"]}', "").error == "label 'tech' is named twice; give each label once"
    schema = ml.response_format(LABELS)["json_schema"]["schema"]["properties"]["labels"]
    assert (schema["minItems"], schema["maxItems"], schema["items"]["enum"]) == (1, 2, list(LABELS))
    g = ml.grammar(LABELS)
    assert 'label ("," " "? label){0,1}' in g and '"\\"sport\\""' in g


def _flip(truth: list[tuple[str, ...]], rates: dict[str, tuple[float, float]], rng: random.Random) -> list:
    """Predictions with per-label miss and false-alarm rates."""
    out = []
    for t in truth:
        p = [lab for lab in LABELS if (lab in t and rng.random() > rates[lab][0]) or
             (lab not in t and rng.random() < rates[lab][1])]
        out.append(tuple(p))
    return out


def test_multi_label_evaluation_matches_sklearn_computed_apart() -> None:
    rng = random.Random(7)
    truth = [tuple(lab for lab in LABELS if rng.random() < 0.3) for _ in range(600)]
    rates = {"sport": (0.05, 0.02), "politics": (0.3, 0.01), "tech": (0.1, 0.25), "business": (0.0, 0.0)}
    pred = _flip(truth, rates, rng)
    report = task_type("multi_label", LABELS).evaluate(truth, pred, n_boot=200, seed=1)
    mlb = MultiLabelBinarizer(classes=list(LABELS))
    t, p = mlb.fit_transform(truth), mlb.transform(pred)
    f1 = skm.f1_score(t, p, average=None)
    by = {row["name"]: row for row in report["per_class"]}
    for j, lab in enumerate(LABELS):
        assert by[lab]["f1"]["value"] == pytest.approx(f1[j])
        assert by[lab]["over_prediction"]["value"] == pytest.approx(p[:, j].sum() / t[:, j].sum())
        assert by[lab]["f1"]["low"] <= by[lab]["f1"]["value"] <= by[lab]["f1"]["high"]
    assert by["business"]["f1"]["value"] == 1.0  # no errors on it
    assert by["tech"]["over_prediction"]["low"] > 1  # 25% false alarms: over-predicted, and the interval says so
    assert by["politics"]["over_prediction"]["high"] < 1  # 30% misses: under-predicted
    assert report["f1_macro"]["value"] == pytest.approx(skm.f1_score(t, p, average="macro"))
    assert report["f1_micro"]["value"] == pytest.approx(skm.f1_score(t, p, average="micro"))
    assert report["hamming_loss"]["value"] == pytest.approx(skm.hamming_loss(t, p))
    assert report["subset_accuracy"]["value"] == pytest.approx(skm.accuracy_score(t, p))
    assert report["cardinality_human"]["value"] == pytest.approx(np.mean([len(x) for x in truth]))


def test_spans_align_to_offsets_in_the_original_text() -> None:
    text = "Zoë met Ada Lovelace\r\nin Paris 🎉 and ada  lovelace again; Paris!"
    spans, dropped = align(text, [("Ada Lovelace", "PER"), ("ADA LOVELACE", "PER"), ("Paris", "LOC"),
                                  ("Paris", "LOC"), ("Berlin", "LOC"), ("Zoë", "PER")])
    assert dropped == 1  # Berlin is not in the text: dropped, never invented
    assert [text[s.start : s.end] for s in spans] == ["Zoë", "Ada Lovelace", "Paris", "ada  lovelace", "Paris"]
    assert all(s.text == text[s.start : s.end] for s in spans)
    emoji_at = text.index("🎉")
    second_paris = spans[-1]
    # after the emoji, UTF-16 offsets run one ahead of code points
    assert utf16_offsets(text, second_paris.start, second_paris.end) == (second_paris.start + 1,
                                                                          second_paris.end + 1)
    assert second_paris.start > emoji_at


def test_span_answers_bad_input_one_clear_line() -> None:
    sp = task_type("spans", ("PER", "LOC"))
    text = "Ada lives in Paris."
    ok = sp.parse(json.dumps({"spans": [{"text": "Paris", "type": "loc"}, {"start": 0, "end": 3, "type": "PER"}]}),
                  text)
    assert ok.value == (Span(0, 3, "PER", "Ada"), Span(13, 18, "LOC", "Paris")) and ok.error is None
    assert sp.parse('{"spans": [{"start": 10, "end": 40, "type": "PER"}]}', text).error == (
        "span 10-40 lies outside the text (0-19)")
    overlap = sp.parse('{"spans": [{"text": "Ada lives", "type": "PER"}, {"text": "lives in", "type": "LOC"}]}', text)
    assert overlap.error == ("spans 0-9 'Ada lives' and 4-12 'lives in' overlap; the task forbids overlapping spans "
                             "(task.allow_overlap)")  # quotes that cross: a genuine overlap
    allowed = task_type("spans", ("PER", "LOC"), allow_overlap=True)
    assert len(allowed.parse('{"spans": [{"text": "Ada lives", "type": "PER"}, {"text": "lives in", "type": "LOC"}]}',
                             text).value) == 2
    assert sp.parse('{"spans": [{"text": "Ada", "type": "ORG"}]}', text).error == (
        "span type 'ORG' is not one of: PER, LOC")
    missing = sp.parse('{"spans": [{"text": "Bob", "type": "PER"}]}', text)
    assert (missing.value, missing.dropped) == ((), 1)


def test_span_evaluation_error_structure_known_in_advance() -> None:
    """Per item: one exact match, one type error, one boundary error, one missed and one spurious span."""
    truth_item = (Span(0, 3, "PER"), Span(10, 15, "LOC"), Span(20, 30, "PER"), Span(40, 45, "LOC"))
    pred_item = (Span(0, 3, "PER"), Span(10, 15, "PER"), Span(20, 26, "PER"), Span(50, 55, "LOC"))
    n = 50
    report = task_type("spans", ("PER", "LOC")).evaluate([truth_item] * n, [pred_item] * n, n_boot=100, seed=0)
    errors = {k: v["value"] for k, v in report["errors"].items()}
    assert errors == {"correct": n, "type_error": n, "boundary_error": n, "boundary_and_type_error": 0,
                      "missed": n, "spurious": n}
    exact_all = report["exact"]["per_class"][-1]
    # strict: 1 correct of 4 predicted and 4 true
    assert exact_all["name"] == "all" and exact_all["f1"]["value"] == pytest.approx(0.25)
    # partial: exact counts 1, the boundary error 0.5 and the type error (exact offsets) 1: (1+1+0.5)/4
    assert report["partial"]["per_class"][-1]["precision"]["value"] == pytest.approx(2.5 / 4)
    # every item is the same: the bootstrap interval is a point
    assert exact_all["f1"]["low"] == exact_all["f1"]["high"] == pytest.approx(0.25)


def test_confidence_per_element_and_routing_reasons() -> None:
    ml = task_type("multi_label", LABELS)
    samples = [("sport", "tech"), ("sport",), ("sport", "tech"), ("sport", "politics")]
    shares = element_shares(samples, ml)
    assert shares == {"label politics": 0.25, "label sport": 1.0, "label tech": 0.5}
    assert doubtful(shares, 0.6) == ["label politics", "label tech"]
    sp = task_type("spans", ("PER",))
    a, b = (Span(0, 3, "PER", "Ada"),), (Span(0, 3, "PER", "Ada"), Span(8, 11, "PER", "Bob"))
    assert element_shares([a, b], sp) == {"span 0-3 PER 'Ada'": 1.0, "span 8-11 PER 'Bob'": 0.5}
    assert sp.agreement(a, b) == pytest.approx(2 / 3)
    assert ml.agreement(("sport", "tech"), ("sport",)) == 0.5


@pytest.mark.parametrize(
    ("task", "named"),
    [
        ({"type": "ner"}, "task.type must be one of single, multi_label, spans, got 'ner'"),
        ({"type": "single", "min_labels": 1}, "task.min_labels does not apply to task.type = 'single'"),
        ({"type": "spans", "max_labels": 2}, "task.max_labels does not apply to task.type = 'spans'"),
        ({"type": "multi_label", "min_labels": -1}, "task.min_labels must be a whole number >= 0, got -1"),
        ({"type": "multi_label", "min_labels": 2, "max_labels": 1}, "task.max_labels must lie between min_labels"),
        ({"type": "multi_label", "max_labels": 9}, "the number of labels (3), got 9"),
        ({"type": "spans", "allow_overlap": "yes"}, "task.allow_overlap must be true or false"),
    ],
)
def test_task_type_keys_are_checked(tmp_path: Path, task: dict, named: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write_task(tmp_path, task=task), env={})
    assert named in str(err.value) and "\n" not in str(err.value)


def test_existing_tasks_stay_single_and_the_type_reaches_the_protocol(tmp_path: Path) -> None:
    assert load_config(write_task(tmp_path), env={}).kind == TaskKind()
    task = load_config(write_task(tmp_path, task={"type": "multi_label", "min_labels": 1}), env={})
    kind = for_task(task)
    assert kind.name == "multi_label" and kind.parse('{"labels": []}', "").error == (
        "0 labels where the task asks for at least 1 (task.min_labels)")


def test_encode_decode_round_trip_every_type():
    from labeler.tasktypes.registry import task_type
    from labeler.tasktypes.spans import Span

    text = "Zoë met Ada\r\nin Köln 🎉"
    cases = {
        "single": ("b", "b"),
        "multi_label": (("a", "c"), '["a", "c"]'),
        "spans": ((Span(0, 3, "a", "Zoë"), Span(16, 20, "c", "Köln")),
                  '[{"start": 0, "end": 3, "type": "a", "text": "Zoë"}, '
                  '{"start": 16, "end": 20, "type": "c", "text": "Köln"}]'),
    }
    assert text[16:20] == "Köln"
    for name, (value, stored) in cases.items():
        kind = task_type(name, ("a", "b", "c"))
        assert kind.encode(value) == stored
        assert kind.decode(stored) == value
        assert kind.encode(None) is None and kind.decode(None) is None
    for name in ("multi_label", "spans"):
        with pytest.raises(ValueError, match="not a JSON list"):
            task_type(name, ("a",)).decode("{oops")


def test_span_quotes_inside_longer_names_take_their_own_occurrence() -> None:
    """'Israel' quoted before 'Israeli' must not land inside 'Israeli' (and so be refused as overlapping), and
    'Milan' must not land inside 'AC Milan': longer quotes are placed first, whole words preferred."""
    sp = task_type("spans", ("LOC", "ORG", "MISC"))
    text = "Israeli troops left Israel; AC Milan beat Milan rivals."
    answer = {"spans": [{"text": "Israel", "type": "LOC"}, {"text": "Israeli", "type": "MISC"},
                        {"text": "Milan", "type": "LOC"}, {"text": "AC Milan", "type": "ORG"}]}
    got = sp.parse(json.dumps(answer), text)
    assert got.error is None and got.dropped == 0
    assert [(s.start, s.end, s.type) for s in got.value] == [(0, 7, "MISC"), (20, 26, "LOC"), (28, 36, "ORG"),
                                                             (42, 47, "LOC")]
    assert all(text[s.start:s.end] == s.text for s in got.value)


def test_case_tolerant_quote_never_lands_inside_a_word() -> None:
    """Gemma-270M on the bundled CoNLL stories quoted 'EU' and 'UN' where the text had 'European Union' and
    'trade union': a case-tolerant match inside a word is no span; the quote is dropped (or takes a whole word)."""
    text = "European Union leader met the trade union; the EU agreed."
    spans, dropped = align(text, [("eu", "ORG"), ("UN", "ORG")])
    assert [(s.start, s.end, s.text) for s in spans] == [(47, 49, "EU")]
    assert dropped == 1


def test_a_span_answer_cut_off_keeps_its_complete_spans_and_counts_the_cut_one() -> None:
    """Out of output tokens (a small model repeating itself): the complete spans are kept, a repeat with no
    further occurrence is dropped, the cut-off span counts as dropped, so routing sends the item to humans."""
    sp = task_type("spans", ("PER", "LOC"))
    text = "Ada met Bob in Paris."
    raw = ('{"spans": [{"text": "Ada", "type": "PER"}, {"text": "Paris", "type": "LOC"}, {"text": "Ada", "type": "PER"}'
           ', {"text": "Ad')
    got = sp.parse(raw, text)
    assert got.error is None and got.value == (Span(0, 3, "PER", "Ada"), Span(15, 20, "LOC", "Paris"))
    assert got.dropped == 2  # the second "Ada" (no second occurrence) and the cut-off one
    for hopeless in ('{"spans": [{"text": "Ad', '{"labels": [', "Ada, Paris"):
        assert sp.parse(hopeless, text).error == "answer is not a JSON object with a spans list"
