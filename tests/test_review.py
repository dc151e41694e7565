"""Human review round trip: export formats checked against Label Studio's and Argilla's documented shapes,
simulated reviewers with known error rates, import, agreement, merge, adjudication, promote, and the TUI."""

from __future__ import annotations

import argparse
import csv
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import write_task

from labeler.cli.humans import register
from labeler.config import load_config
from labeler.errors import ReviewError
from labeler.humans import decide
from labeler.inputs import Row
from labeler.review.agreement import agreement
from labeler.review.importer import import_reviews
from labeler.review.merge import final_rows, merge_run
from labeler.review.promote import promote
from labeler.review.queue_export import export_queue
from labeler.review.router import route_run
from labeler.review.tui import review_loop, run_tui
from labeler.store import RunStore
from labeler.store.rows import QueueEntry, Review
from labeler.types import Item, ItemResult

LABELS = ("business", "sport", "tech")
REASONS = ("guideline gap", "ambiguous", "model error", "other")
N = 90


def truth_of(k: int) -> str:
    return LABELS[k % 3]


def wrong(label: str) -> str:
    return LABELS[(LABELS.index(label) + 1) % 3]


def make_run(
    root: Path, *, n: int = N, gold: bool = False, gold_every: int | None = None
) -> tuple[Path, dict[str, str]]:
    """`n` items; the LLM is wrong (confidence 0.3) on every 6th item and right (0.70..0.99) on the rest.
    With `gold` the input's gold column holds the truth (a vote in the final dataset: labeler.humans); with
    `gold_every` only items with k % gold_every == 2 carry it. Routed (low confidence + 10% audit)."""
    (root / "task").mkdir(parents=True)
    (root / "task" / "examples.jsonl").write_text('{"text": "shares fell", "label": "business"}\n', encoding="utf-8")
    cfg = write_task(
        root / "task",
        labels=LABELS,
        task={"examples": "examples.jsonl"},
        sections={"routing": {"low_confidence": 0.6, "audit_fraction": 0.1, "seed": 4}},
    )
    task = load_config(cfg, env={})
    run_dir = root / "run"
    manifest = {
        "run_id": "r1",
        "labels": list(LABELS),
        "members": [{"name": "default", "template_hash": "x", "endpoint": {"model": "test-model"}}],
        "config_path": str(cfg),
        "config": dict(task.raw),
    }
    store = RunStore.create(run_dir, manifest)
    truth = {f"i{k:02d}": truth_of(k) for k in range(n)}

    def has_gold(k: int) -> bool:
        return gold_every is not None and k % gold_every == 2

    store.ingest(
        [
            Row(Item(i, f"text {i} about {t}", k + 1), gold=t if gold or has_gold(k) else None)
            for k, (i, t) in enumerate(truth.items())
        ],
        members=["default"],
    )
    for k, (i, t) in enumerate(truth.items()):
        if k % 6 == 0:
            store.put_result(ItemResult(i, "default", "labeled", label=wrong(t), confidence=0.3))
        else:
            store.put_result(ItemResult(i, "default", "labeled", label=t, confidence=0.7 + (k % 30) / 100))
    store.close()
    route_run(run_dir)
    return run_dir, truth


@pytest.fixture
def run(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    return make_run(tmp_path)


def queue_of(run_dir: Path) -> list[QueueEntry]:
    store = RunStore.open(run_dir)
    try:
        return store.queue()
    finally:
        store.close()


def stored_reviews(run_dir: Path) -> dict[tuple[str, str], Review]:
    store = RunStore.open(run_dir)
    try:
        return {(r.item_id, r.reviewer): r for revs in store.reviews().values() for r in revs}
    finally:
        store.close()


# --- Label Studio ----------------------------------------------------------------------------------------
def check_labelstudio(tasks: Any, config_xml: str) -> None:
    """The documented shapes: a task is {"data": {...}, "predictions": [{"model_version", "score", "result":
    [{"from_name", "to_name", "type": "choices", "value": {"choices": [...]}}]}]}; the config's control tags
    name what results refer to, and $text names a data key."""
    root = ET.fromstring(config_xml)
    assert root.tag == "View"
    texts = {t.get("name"): t.get("value") for t in root.iter("Text")}
    choices = {c.get("name"): c for c in root.iter("Choices")}
    assert texts == {"text": "$text"}
    assert choices["label"].get("toName") == "text" and choices["label"].get("choice") == "single"
    assert [c.get("value") for c in choices["label"].iter("Choice")] == list(LABELS)
    assert [c.get("value") for c in choices["correction_reason"].iter("Choice")] == list(REASONS)
    assert isinstance(tasks, list) and tasks
    for t in tasks:
        assert isinstance(t["id"], int)
        assert isinstance(t["data"]["text"], str) and isinstance(t["data"]["item_id"], str)
        for p in t.get("predictions", []):
            assert isinstance(p["model_version"], str) and 0.0 <= p["score"] <= 1.0
            for r in p["result"]:
                assert r["type"] == "choices" and r["to_name"] in texts and r["from_name"] in choices
                assert set(r["value"]["choices"]) <= {c.get("value") for c in choices[r["from_name"]].iter("Choice")}


def test_labelstudio_export_matches_documented_shape(run: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    run_dir, _ = run
    files = export_queue(run_dir, tmp_path / "ls" / "tasks.json", "labelstudio")
    assert [f.name for f in files] == ["tasks.json", "tasks.label_config.xml", "tasks.project.json"]
    tasks = json.loads(files[0].read_text(encoding="utf-8"))
    check_labelstudio(tasks, files[1].read_text(encoding="utf-8"))
    project = json.loads(files[2].read_text(encoding="utf-8"))
    assert project["label_config"] == files[1].read_text(encoding="utf-8") and project["maximum_annotations"] == 1
    queue = queue_of(run_dir)
    assert [t["data"]["item_id"] for t in tasks] == [e.item_id for e in queue]
    assert all(
        t["predictions"][0]["result"][0]["value"]["choices"] == [e.llm_label] for t, e in zip(tasks, queue, strict=True)
    )


def test_blind_audit_leaves_nothing_that_tells_audit_items_apart(
    run: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    run_dir, _ = run
    queue = {e.item_id: e for e in queue_of(run_dir)}
    assert any(e.audit for e in queue.values()) and any(not e.audit for e in queue.values())
    # blind audit: no suggestion on any item (on audit items only it would mark them), no reasons or rank
    tasks = json.loads(export_queue(run_dir, tmp_path / "b.json", "labelstudio", blind_audit=True)[0].read_text())
    assert all(set(t) == {"id", "data"} and set(t["data"]) == {"text", "item_id"} for t in tasks)
    order = [t["data"]["item_id"] for t in tasks]
    assert sorted(order) == sorted(queue) and order != [e.item_id for e in queue_of(run_dir)]  # not rank order
    assert [t["id"] for t in tasks] == list(range(1, len(tasks) + 1))
    project = json.loads((tmp_path / "b.project.json").read_text())
    assert project["show_collab_predictions"] is False
    records_file, settings_file = export_queue(run_dir, tmp_path / "a.json", "argilla", blind_audit=True)
    records = json.loads(records_file.read_text())
    assert all(r["suggestions"] == {} and r["metadata"] == {} for r in records)
    assert json.loads(settings_file.read_text())["metadata"] == []
    export_queue(run_dir, tmp_path / "c.csv", "csv", blind_audit=True)
    with (tmp_path / "c.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert all(r["llm_label"] == r["confidence"] == r["reasons"] == r["rank"] == "" for r in rows)
    assert [r["id"] for r in rows] == order  # the same shuffle everywhere
    # not blind: the suggestion on every item; hidden on all with no_suggestion
    tasks = json.loads(export_queue(run_dir, tmp_path / "s.json", "labelstudio")[0].read_text())
    assert all("predictions" in t and "llm_label" in t["data"] and "reasons" in t["data"] for t in tasks)
    tasks = json.loads(export_queue(run_dir, tmp_path / "n.json", "labelstudio", no_suggestion=True)[0].read_text())
    assert not any("predictions" in t or "llm_label" in t["data"] for t in tasks)


def ls_export(tasks: list[dict[str, Any]], answers: dict[int, dict[str, str]]) -> list[dict[str, Any]]:
    """What Label Studio's JSON export gives back: each task with annotations by user id (`completed_by`)."""
    out = []
    for n, t in enumerate(tasks):
        anns = []
        for user, labels in answers.items():
            if t["data"]["item_id"] in labels:
                value = {"choices": [labels[t["data"]["item_id"]]]}
                result = [{"id": f"r{n}", "from_name": "label", "to_name": "text", "type": "choices", "value": value}]
                anns.append({"id": 100 * user + n, "completed_by": user, "result": result, "was_cancelled": False})
        anns.append({"id": 9999, "completed_by": 3, "result": [], "was_cancelled": True})  # skipped: ignored
        out.append({"id": 1000 + n, "data": t["data"], "annotations": anns, "predictions": t.get("predictions", [])})
    return out


def simulate(queue: list[QueueEntry], truth: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Reviewer 1 labels every item, wrong on every 10th (10% error); reviewer 2 the first two thirds,
    wrong where position % 10 is 1, 4 or 7 (30% error). Their errors never fall on the same item."""
    one = {e.item_id: wrong(truth[e.item_id]) if n % 10 == 0 else truth[e.item_id] for n, e in enumerate(queue)}
    two = {
        e.item_id: wrong(truth[e.item_id]) if n % 10 in (1, 4, 7) else truth[e.item_id]
        for n, e in enumerate(queue[: 2 * len(queue) // 3])
    }
    return one, two


def test_round_trip_two_reviewers_through_label_studio(run: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    run_dir, truth = run
    queue = queue_of(run_dir)
    tasks = json.loads(export_queue(run_dir, tmp_path / "tasks.json", "labelstudio")[0].read_text())
    one, two = simulate(queue, truth)
    exported = tmp_path / "export.json"
    exported.write_text(json.dumps(ls_export(tasks, {1: one, 2: two})), encoding="utf-8")

    s = import_reviews(run_dir, exported)
    assert s.fmt == "labelstudio" and s.reviewers == ("1", "2")
    assert s.reviews == len(one) + len(two) and s.items == len(queue)
    llm = {e.item_id: e.llm_label for e in queue}
    assert s.corrections == sum(lab != llm[i] for d in (one, two) for i, lab in d.items())
    # agreement on the overlap is known: they agree exactly where neither is wrong
    shared = list(two)
    expected = sum(one[i] == two[i] for i in shared) / len(shared)
    assert s.agreement.items == len(shared)
    (pair,) = s.agreement.pairs
    assert (pair.a, pair.b, pair.items) == ("1", "2", len(shared))
    assert pair.agreement == pytest.approx(expected)
    assert pair.agreement == pytest.approx(sum(n % 10 not in (0, 1, 4, 7) for n in range(len(shared))) / len(shared))
    po = expected
    pe = sum(
        (sum(one[i] == lab for i in shared) / len(shared)) * (sum(two[i] == lab for i in shared) / len(shared))
        for lab in LABELS
    )
    assert pair.kappa == pytest.approx((po - pe) / (1 - pe))

    store = RunStore.open(run_dir)
    try:
        rows = list(final_rows(store))
    finally:
        store.close()
    assert sorted(r["id"] for r in rows) == sorted(truth)  # no item lost
    by_id = {r["id"]: r for r in rows}
    for i, r in by_id.items():
        kept = json.loads(r["human_labels"])
        assert kept == {k: v for k, v in (("1", one.get(i)), ("2", two.get(i))) if v is not None}  # every label kept
        assert r["llm_label"] == llm.get(i, r["llm_label"])
        if i in two and one[i] != two[i]:  # a tie: the earliest answer (labeler.humans), flagged
            assert (r["tie"], r["source"], r["label"], r["human_label"]) == (True, "human", one[i], one[i])
        elif i in one:
            assert (r["source"], r["label"], r["tie"]) == ("human", one[i], False)
        else:
            assert (r["source"], r["n_reviews"], r["routing_reasons"]) == ("llm", 0, "[]")
    # the merged labels fix the LLM's errors wherever both reviewers were right
    fixed = [i for i in shared if one[i] == two[i] == truth[i]]
    assert fixed and all(by_id[i]["label"] == truth[i] for i in fixed)
    assert all(by_id[e.item_id]["audit"] == e.audit for e in queue)

    # adjudicate the ties with the truth: they win
    ties = [i for i in shared if one[i] != two[i]]
    adj = tmp_path / "adj.csv"
    with adj.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "human_label"])
        w.writerows([i, truth[i]] for i in ties)
    import_reviews(run_dir, adj, reviewer="lead", adjudication=True)
    counts = merge_run(run_dir, tmp_path / "final.jsonl")
    final = {r["id"]: r for r in map(json.loads, (tmp_path / "final.jsonl").read_text().splitlines())}
    assert len(final) == N and counts["adjudicated"] == len(ties)
    assert all(final[i]["label"] == truth[i] and final[i]["source"] == "adjudicated" for i in ties)
    assert not any(final[i]["tie"] for i in ties)  # settled by the adjudication (the split votes stay in human_labels)


# --- Argilla -----------------------------------------------------------------------------------------------
def check_argilla(records: Any, settings: dict[str, Any]) -> None:
    """`Record.to_dict` shape ({id, fields, metadata, suggestions: {question: {value, score, agent}},
    responses, vectors}) against `Settings.serialize` ({fields, questions, metadata, ...})."""
    fields = {f["name"]: f for f in settings["fields"]}
    questions = {q["name"]: q for q in settings["questions"]}
    metadata = {m["name"]: m for m in settings["metadata"]}
    assert fields["text"]["settings"]["type"] == "text"
    assert questions["label"]["settings"]["type"] == "label_selection" and questions["label"]["required"]
    assert [o["value"] for o in questions["label"]["settings"]["options"]] == list(LABELS)
    assert [o["value"] for o in questions["correction_reason"]["settings"]["options"]] == list(REASONS)
    assert settings["allow_extra_metadata"] is False
    for m in metadata.values():
        assert m["type"] == m["settings"]["type"] in ("terms", "integer", "float")
    for r in records:
        assert set(r) == {"id", "fields", "metadata", "suggestions", "responses", "vectors"}
        assert set(r["fields"]) <= set(fields) and isinstance(r["fields"]["text"], str)
        assert set(r["metadata"]) <= set(metadata)
        for name, value in r["metadata"].items():
            if metadata[name]["type"] == "terms":
                allowed = set(metadata[name]["settings"]["values"])
                assert set(value if isinstance(value, list) else [value]) <= allowed
        for q, s in r["suggestions"].items():
            assert set(s) == {"value", "score", "agent"}
            assert s["value"] in [o["value"] for o in questions[q]["settings"]["options"]]


def test_argilla_round_trip(run: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    run_dir, truth = run
    records_file, settings_file = export_queue(run_dir, tmp_path / "ar" / "records.json", "argilla")
    assert settings_file.name == "records.settings.json"
    records = json.loads(records_file.read_text(encoding="utf-8"))
    check_argilla(records, json.loads(settings_file.read_text(encoding="utf-8")))
    queue = queue_of(run_dir)
    one, two = simulate(queue, truth)
    u1, u2 = "6f0c8f4e-0000-4000-8000-000000000001", "6f0c8f4e-0000-4000-8000-000000000002"
    for r in records:  # as Argilla writes them after review, with each response's status
        r["responses"] = {"label": [{"value": one[r["id"]], "user_id": u1, "status": "submitted"}]}
        if r["id"] in two:
            r["responses"]["label"].append({"value": two[r["id"]], "user_id": u2, "status": "submitted"})
            r["responses"]["correction_reason"] = [{"value": "ambiguous", "user_id": u2, "status": "submitted"}]
    records[0]["responses"]["label"].append({"value": "tech", "user_id": "drafter", "status": "draft"})
    out = tmp_path / "argilla_export.json"
    out.write_text(json.dumps(records), encoding="utf-8")
    s = import_reviews(run_dir, out)
    assert s.fmt == "argilla" and s.reviewers == (u1, u2) and s.reviews == len(one) + len(two)
    got = {k: (r.label, r.correction_reason) for k, r in stored_reviews(run_dir).items()}
    assert got[(queue[0].item_id, u2)] == (two[queue[0].item_id], "ambiguous")
    assert got[(queue[-1].item_id, u1)] == (one[queue[-1].item_id], None)


def test_argilla_flattened_export_is_read(run: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    run_dir, truth = run
    e = queue_of(run_dir)[0]
    flat = [
        {
            "id": e.item_id,
            "text": e.text,
            "label.responses": [truth[e.item_id], "sport"],
            "label.responses.users": ["u1", "u2"],
            "label.responses.status": ["submitted", "discarded"],
        }
    ]
    path = tmp_path / "flat.json"
    path.write_text(json.dumps(flat), encoding="utf-8")
    s = import_reviews(run_dir, path, fmt="argilla")
    assert (s.reviews, s.reviewers) == (1, ("u1",))


# --- CSV and errors ------------------------------------------------------------------------------------------
def test_csv_round_trip_with_correction_reasons(run: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    run_dir, truth = run
    (path,) = export_queue(run_dir, tmp_path / "q.csv", "csv")
    with path.open(encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == [
            "id",
            "text",
            "llm_label",
            "confidence",
            "reasons",
            "rank",
            "human_label",
            "reviewer",
            "correction_reason",
            "note",
        ]
        rows = list(reader)
    assert all(r["human_label"] == r["reviewer"] == r["correction_reason"] == "" for r in rows)
    for r in rows[:10]:
        r["human_label"] = truth[r["id"]].upper()  # case does not matter
        r["correction_reason"] = "Model error" if truth[r["id"]] != r["llm_label"] else ""
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    s = import_reviews(run_dir, path, reviewer="carol")
    assert (s.reviews, s.reviewers, s.agreement.items) == (10, ("carol",), 0)
    got = {i: (r.label, r.correction_reason) for (i, _), r in stored_reviews(run_dir).items()}
    assert got == {r["id"]: (truth[r["id"]], "model error" if r["correction_reason"] else None) for r in rows[:10]}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"id": "nope", "human_label": "sport"}, r"row 2 \(id nope\): unknown item id 'nope'"),
        ({"id": "i01", "human_label": "weather"}, r"row 2 \(id i01\): label 'weather' is not one of: business, sport"),
        (
            {"id": "i01", "human_label": "sport", "correction_reason": "typo"},
            r"row 2 \(id i01\): correction reason 'typo' is not one of: guideline gap, ambiguous, model error, other",
        ),
        ({"id": "i01", "human_label": "sport"}, r"row 2 \(id i01\): no reviewer; fill the reviewer column"),
    ],
)
def test_bad_rows_are_errors_naming_the_row_and_nothing_is_imported(
    run: tuple[Path, dict[str, str]], tmp_path: Path, row: dict[str, str], message: str
) -> None:
    run_dir, _ = run
    path = tmp_path / "bad.csv"
    second = {"reviewer": "" if "no reviewer" in message else "dave", **row}
    rows = [{"id": "i02", "human_label": "tech", "reviewer": "dave", "correction_reason": ""}, second]
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "human_label", "reviewer", "correction_reason"], restval="")
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(ReviewError, match=message):
        import_reviews(run_dir, path)
    assert stored_reviews(run_dir) == {}


def test_labelstudio_task_without_item_id_is_an_error(run: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    run_dir, _ = run
    path = tmp_path / "x.json"
    path.write_text(json.dumps([{"id": 1, "data": {"text": "t"}, "annotations": []}]), encoding="utf-8")
    with pytest.raises(ReviewError, match=r"task 1: no data.item_id"):
        import_reviews(run_dir, path)


# --- merge rules and agreement ---------------------------------------------------------------------------------
def test_final_label_rule_is_humans_decide() -> None:
    """The final dataset's rule is labeler.humans.decide (no vote: the LLM's label stays, source llm)."""
    m = decide({})
    assert (m.label, m.source, m.tie) == (None, None, False)
    m = decide({"r1": "b", "r2": "b", "r3": "c"})
    assert (m.label, m.source, m.tie) == ("b", "human", False)
    m = decide({"r1": "b", "r2": "c"})
    assert (m.label, m.source, m.tie) == ("b", "human", True)  # a tie: the earliest answer, flagged
    m = decide({"r1": "b", "r2": "c"}, adjudication="c")
    assert (m.label, m.source, m.tie) == ("c", "adjudicated", False)  # the adjudication settles the tie
    m = decide({"r1": "b"})
    assert (m.label, m.source) == ("b", "human")  # a failed item labeled by a human
    m = decide({"r1": "b", "gold": "c"})
    assert (m.label, m.source, m.tie) == ("c", "human", True)  # a tie goes to gold when gold is tied


def test_agreement_with_one_label_has_undefined_kappa() -> None:
    ag = agreement({"x": {"a": "sport", "b": "sport"}, "y": {"a": "sport", "b": "sport"}}, labels=LABELS)
    assert ag.all_agree == 1.0 and ag.pairs[0].agreement == 1.0 and ag.pairs[0].kappa is None
    three = agreement({"x": {"a": "s", "b": "s", "c": "t"}, "y": {"a": "s", "c": "s"}}, labels=("s", "t"))
    assert three.items == 2 and three.all_agree == 0.5
    assert {(p.a, p.b): p.items for p in three.pairs} == {("a", "b"): 1, ("a", "c"): 2, ("b", "c"): 1}


# --- promote ---------------------------------------------------------------------------------------------------
def test_promote_appends_corrections_as_examples(run: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    run_dir, truth = run
    queue = queue_of(run_dir)
    path = tmp_path / "r.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "human_label", "reviewer"])
        w.writerows([e.item_id, truth[e.item_id], "erin"] for e in queue)
    import_reviews(run_dir, path)
    corrected = [e.item_id for e in queue if truth[e.item_id] != e.llm_label]
    assert len(corrected) == N // 6  # every LLM error is low-confidence, so all were routed

    examples = tmp_path / "task" / "examples.jsonl"
    got_path, n = promote(run_dir, max_n=3)
    assert (got_path, n) == (examples.resolve(), 3)
    got_path, n = promote(run_dir)
    assert n == len(corrected) - 3  # the first three are already in the file
    assert promote(run_dir)[1] == 0
    lines = [json.loads(line) for line in examples.read_text(encoding="utf-8").splitlines()]
    assert lines[0] == {"text": "shares fell", "label": "business"}
    assert all(set(x) == {"text", "label"} for x in lines)
    assert sorted(x["label"] for x in lines[1:]) == sorted(truth[i] for i in corrected)
    task = load_config(tmp_path / "task" / "task.toml", env={})  # the config still loads, with the new examples
    assert len(task.examples) == 1 + len(corrected)


# --- TUI ---------------------------------------------------------------------------------------------------------
def scripted(keys: list[str], seen: list[str]) -> Any:
    it: Iterator[str] = iter(keys)

    def read(prompt: str) -> str:
        seen.append(prompt)
        try:
            return next(it)
        except StopIteration:
            raise EOFError from None

    return read


def test_tui_loop_with_scripted_keys() -> None:
    entries = [
        QueueEntry("a", 1, ("failed",), 2.0, False, None, None, text="first text"),
        QueueEntry("b", 2, ("low_confidence",), 0.7, False, "sport", 0.3, text="second text"),
        QueueEntry("c", 3, ("audit",), 0.1, True, "tech", 0.9, text="third text"),
    ]
    saved: list[Review] = []
    out: list[str] = []
    prompts: list[str] = []
    keys = ["x", "1", "3", "2", "b", "s", "s", "q"]
    # x: unknown; 1: a=business (no suggestion, no reason asked); 3: b=tech ≠ sport → reason 2 (ambiguous);
    # b: back to b; s: skip it (answer kept); s: skip c; q never reached (end of queue)
    result = review_loop(
        entries,
        labels=LABELS,
        reasons=REASONS,
        reviewer="zoe",
        save=saved.append,
        read=scripted(keys, prompts),
        write=out.append,
    )
    assert [(r.item_id, r.label, r.correction_reason, r.source) for r in saved] == [
        ("a", "business", None, "tui"),
        ("b", "tech", "ambiguous", "tui"),
    ]
    assert (result.answered, result.skipped, result.quit) == (2, 1, False)
    shown = "\n".join(out)
    assert "unknown key 'x'" in shown and "LLM: sport (confidence 0.30)" in shown
    assert "routed for: audit" in shown and "LLM: tech (confidence 0.90)" in shown
    assert "your answer: tech" in shown  # going back shows the answer given
    assert sum("why the change?" in p for p in prompts) == 1
    # blind audit: no item shows the suggestion or why it was routed, so none asks why the label changed
    out.clear()
    prompts.clear()
    saved.clear()
    review_loop(
        entries,
        labels=LABELS,
        reasons=REASONS,
        reviewer="zoe",
        save=saved.append,
        read=scripted(["1", "3", "1"], prompts),
        write=out.append,
        blind_audit=True,
    )
    shown = "\n".join(out)
    assert "routed for" not in shown and "LLM: sport" not in shown and "LLM: tech" not in shown
    assert shown.count("LLM: (suggestion hidden)") == 3
    assert not any("why the change?" in p for p in prompts)
    assert [(r.item_id, r.label) for r in saved] == [("a", "business"), ("b", "tech"), ("c", "business")]


def test_tui_writes_reviews_and_resumes(run: tuple[Path, dict[str, str]]) -> None:
    run_dir, _ = run
    queue = queue_of(run_dir)
    first, second = queue[0], queue[1]
    other = next(k for k, lab in enumerate(LABELS, 1) if lab != first.llm_label)
    keep = LABELS.index(str(second.llm_label)) + 1
    out: list[str] = []
    result = run_tui(run_dir, reviewer="yan", read=scripted([str(other), "4", str(keep), "q"], []), write=out.append)
    assert (result.answered, result.quit) == (2, True)
    got = {i: (r.label, r.correction_reason, r.source) for (i, _), r in stored_reviews(run_dir).items()}
    assert got == {first.item_id: (LABELS[other - 1], "other", "tui"), second.item_id: (second.llm_label, None, "tui")}
    out.clear()
    result = run_tui(run_dir, reviewer="yan", read=scripted([], []), write=out.append)  # resume, then end of input
    assert result.quit and f"item {queue[2].item_id}" in out[0]


def test_register_adds_review_subcommands() -> None:
    p = argparse.ArgumentParser()
    register(p.add_subparsers())
    a = p.parse_args(["review", "export", "r", "--format", "argilla", "--out", "x.json", "--blind-audit"])
    assert (a.fn.__name__, a.blind_audit, a.no_suggestion) == ("cmd_export", True, False)
    a = p.parse_args(["review", "import", "r", "f.json", "--reviewer", "me"])
    assert (a.fn.__name__, a.reviewer, a.format) == ("cmd_import", "me", None)
    assert p.parse_args(["review", "merge", "r", "--out", "m.csv"]).fn.__name__ == "cmd_merge"
    assert p.parse_args(["review", "promote", "r", "--examples", "e.jsonl", "--max", "5"]).max == 5
    assert p.parse_args(["review", "tui", "r", "--reviewer", "me"]).fn.__name__ == "cmd_tui"
