"""Multi-label and span tasks through the review files, no sockets: the review CSV written, filled in and read
back; Label Studio's JSON and JSON-MIN exports and Argilla's record exports (built as those tools write them,
Label Studio's offsets in UTF-16 code units) imported; the final dataset holds exactly the reviewers'
annotations. Bad answers get one line naming the row."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from tasktype_runs import TOPICS, TYPES, TaskRun, final_labels, make_task_run

from labeler.errors import ReviewError
from labeler.review.importer import import_reviews
from labeler.review.queue_export import export_queue
from labeler.review.tasktype_formats import codepoint_offsets
from labeler.tasktypes.spans import Span, utf16_offsets


@pytest.fixture(params=["multi_label", "spans"])
def run(request: pytest.FixtureRequest, tmp_path: Path) -> TaskRun:
    return make_task_run(tmp_path, request.param)


def _cell(run: TaskRun, value: Any) -> str:
    if run.kind.name == "multi_label":
        return ";".join(value) if value else "-"
    return json.dumps([{"start": s.start, "end": s.end, "type": s.type, "text": s.text} for s in value],
                      ensure_ascii=False)


def _fill_csv(path: Path, cells: dict[str, str], reviewer: str = "ann") -> None:
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        if r["id"] in cells:
            r["human_label"], r["reviewer"] = cells[r["id"]], reviewer
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_utf16_offsets_round_trip_on_emoji() -> None:
    text = "🎉 Zoë 👩‍💻 at ACME"
    for start in range(len(text)):
        for end in range(start + 1, len(text) + 1):
            assert codepoint_offsets(text, *utf16_offsets(text, start, end)) == (start, end)
    assert codepoint_offsets(text, 1, 4) is None  # inside the surrogate pair of 🎉
    assert codepoint_offsets(text, 0, 99) is None


def test_csv_round_trip(run: TaskRun, tmp_path: Path) -> None:
    out = tmp_path / "queue.csv"
    export_queue(run.run_dir, out, "csv")
    with out.open(encoding="utf-8", newline="") as fh:
        shown = {r["id"]: r["llm_label"] for r in csv.DictReader(fh)}
    assert shown == {i: _cell(run, v) if v else ("" if run.kind.name == "multi_label" else "[]")
                     for i, v in run.llm.items()}
    _fill_csv(out, {i: _cell(run, v) for i, v in run.human.items()})
    summary = import_reviews(run.run_dir, out)
    assert summary.reviews == len(run.human) and summary.reviewers == ("ann",)
    assert summary.corrections == sum(run.human[i] != run.llm[i] for i in run.human)
    assert final_labels(run, tmp_path / "final.jsonl") == run.human


def test_csv_spans_quoted_without_offsets_are_placed(tmp_path: Path) -> None:
    run = make_task_run(tmp_path, "spans")
    out = tmp_path / "queue.csv"
    export_queue(run.run_dir, out, "csv")
    quoted = {i: json.dumps([{"text": s.text, "type": s.type} for s in v], ensure_ascii=False)
              for i, v in run.human.items()}
    _fill_csv(out, quoted)
    import_reviews(run.run_dir, out)
    assert final_labels(run, tmp_path / "final.jsonl") == run.human


@pytest.mark.parametrize(
    ("task_type", "cell", "message"),
    [
        ("multi_label", "economy;weather", "row 1 (id t00): label 'weather' is not one of: economy, sport, tech"),
        ("multi_label", "sport;Sport", "row 1 (id t00): label 'sport' is named twice; give each label once"),
        ("spans", '[{"start": 30, "end": 99, "type": "PER"}]', "row 1 (id t00): span 30-99 lies outside the text (0-"),
        ("spans", '[{"start": 0, "end": 3, "type": "DATE"}]', "row 1 (id t00): span type 'DATE' is not one of: PER"),
        ("spans", '[{"start": 0, "end": 12, "type": "PER"}, {"start": 4, "end": 12, "type": "ORG"}]',
         "row 1 (id t00): spans 0-12 'Ada Lovelace' and 4-12 'Lovelace' overlap; the task forbids"),
        ("spans", '[{"start": 1, "end": 13, "type": "PER", "text": "Ada Lovelace"}]',
         "row 1 (id t00): span 1-13 quotes 'Ada Lovelace' but the text there is 'da Lovelace '"),
        ("spans", '[{"start": 0, "end": 3, "type": "PER"', "row 1 (id t00): human_label is not JSON"),
        ("spans", '[{"text": "Marie Curie", "type": "PER"}]', "row 1 (id t00): 1 quoted span(s) not found"),
    ],
)
def test_csv_bad_answers_one_line_naming_the_row(tmp_path: Path, task_type: str, cell: str, message: str) -> None:
    run = make_task_run(tmp_path, task_type)
    out = tmp_path / "queue.csv"
    export_queue(run.run_dir, out, "csv")
    _fill_csv(out, {"t00": cell})
    with pytest.raises(ReviewError) as err:
        import_reviews(run.run_dir, out)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_min_labels_bound_checked(tmp_path: Path) -> None:
    from labeler.review.tasktype_formats import check_value
    from labeler.tasktypes.registry import task_type

    kind = task_type("multi_label", TOPICS, min_labels=1, max_labels=2)
    assert check_value(kind, '["TECH", "economy"]', None, where="x") == '["economy", "tech"]'
    with pytest.raises(ReviewError, match="x: 0 labels where the task asks for at least 1"):
        check_value(kind, "[]", None, where="x")
    with pytest.raises(ReviewError, match="x: 3 labels where the task allows at most 2"):
        check_value(kind, '["tech", "sport", "health"]', None, where="x")


# --- Label Studio -------------------------------------------------------------------------------------
def _ls_result(run: TaskRun, item: str, value: Any) -> list[dict[str, Any]]:
    if run.kind.name == "multi_label":
        return [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": list(value)}}]
    text = run.texts[item]
    out = []
    for s in value:
        start, end = utf16_offsets(text, s.start, s.end)
        out.append({"id": f"r{start}", "from_name": "label", "to_name": "text", "type": "labels",
                    "value": {"start": start, "end": end, "text": s.text, "labels": [s.type]}})
    return out


def test_labelstudio_config_and_predictions(run: TaskRun, tmp_path: Path) -> None:
    files = export_queue(run.run_dir, tmp_path / "tasks.json", "labelstudio")
    root = ET.fromstring(files[1].read_text(encoding="utf-8"))
    if run.kind.name == "multi_label":
        control = next(c for c in root.iter("Choices") if c.get("name") == "label")
        assert control.get("choice") == "multiple"
        assert [c.get("value") for c in control.iter("Choice")] == list(TOPICS)
    else:
        control = next(root.iter("Labels"))
        assert control.get("name") == "label" and control.get("toName") == "text"
        assert [c.get("value") for c in control.iter("Label")] == list(TYPES)
    tasks = json.loads(files[0].read_text(encoding="utf-8"))
    for t in tasks:
        item = t["data"]["item_id"]
        pred = t["predictions"][0]
        got, want = pred["result"], _ls_result(run, item, run.llm[item])
        if run.kind.name == "spans":  # one region per span, each with the score; region ids are ours
            assert all(r["score"] == pred["score"] for r in got)
            got = [{k: v for k, v in r.items() if k not in ("id", "score")} for r in got]
            want = [{k: v for k, v in r.items() if k != "id"} for r in want]
        assert got == want and pred["score"] == round(run_conf(run, item), 4)


def run_conf(run: TaskRun, item: str) -> float:
    return 0.4 + int(item[1:]) / 20  # tasktype_runs.make_task_run's confidence of item k


def _ls_export(run: TaskRun, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Label Studio's JSON export of the tasks, each annotated by user 7 with the reviewer's annotation."""
    out = []
    for n, t in enumerate(tasks, start=1):
        item = t["data"]["item_id"]
        ann = {"id": 100 + n, "completed_by": 7, "was_cancelled": False, "ground_truth": False,
               "created_at": "2026-12-03T10:00:00Z", "updated_at": "2026-12-03T10:00:00Z",
               "result": _ls_result(run, item, run.human[item])}
        out.append({"id": n, "data": t["data"], "annotations": [ann], "predictions": t.get("predictions", [])})
    return out


def test_labelstudio_json_export_import(run: TaskRun, tmp_path: Path) -> None:
    files = export_queue(run.run_dir, tmp_path / "tasks.json", "labelstudio")
    export = tmp_path / "ls-export.json"
    export.write_text(json.dumps(_ls_export(run, json.loads(files[0].read_text()))), encoding="utf-8")
    summary = import_reviews(run.run_dir, export)
    assert summary.fmt == "labelstudio" and summary.reviews == len(run.human) and summary.reviewers == ("7",)
    assert final_labels(run, tmp_path / "final.jsonl") == run.human


def test_labelstudio_json_min_export_import(run: TaskRun, tmp_path: Path) -> None:
    files = export_queue(run.run_dir, tmp_path / "tasks.json", "labelstudio")
    records = []
    for n, t in enumerate(json.loads(files[0].read_text()), start=1):
        item = t["data"]["item_id"]
        result = _ls_result(run, item, run.human[item])
        if run.kind.name == "multi_label":
            value: Any = {"choices": list(run.human[item])} if len(run.human[item]) != 1 else run.human[item][0]
        else:
            value = [r["value"] for r in result]
        if not run.human[item] and run.kind.name == "multi_label":
            continue  # JSON-MIN leaves the key out: no answer
        records.append({"id": n, "text": t["data"]["text"], "item_id": item, "label": value, "annotator": 7,
                        "annotation_id": 200 + n, "created_at": "2026-12-03T10:00:00Z"})
    export = tmp_path / "ls-min.json"
    export.write_text(json.dumps(records), encoding="utf-8")
    summary = import_reviews(run.run_dir, export)
    assert summary.fmt == "labelstudio-min"
    got = final_labels(run, tmp_path / "final.jsonl")
    assert got == {i: (v if (v or run.kind.name == "spans") else None) for i, v in run.human.items()}


def test_labelstudio_code_point_offsets_are_refused(tmp_path: Path) -> None:
    """An export whose offsets count code points, not UTF-16 units, does not slip in shifted spans."""
    run = make_task_run(tmp_path, "spans")
    files = export_queue(run.run_dir, tmp_path / "tasks.json", "labelstudio")
    export = _ls_export(run, json.loads(files[0].read_text()))
    t = next(t for t in export if t["data"]["item_id"] == "t00")  # "Ada Lovelace 👩‍💻 joined ACME in Zürich."
    t["annotations"][0]["result"][1]["value"].update(start=24, end=28)  # code points of "ACME"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(export), encoding="utf-8")
    with pytest.raises(ReviewError, match=r"\(item t00\): span 22-26 quotes 'ACME' but the text there is 'd AC'"):
        import_reviews(run.run_dir, path)
    t = next(t for t in export if t["data"]["item_id"] == "t01")  # "🎉🎉 Grace Hopper ..."
    t["annotations"][0]["result"][0]["value"].update(start=3, end=15)
    path.write_text(json.dumps(export), encoding="utf-8")
    with pytest.raises(ReviewError, match=r"\(item t01\): span 3-15 cuts a character in two \(0-46 UTF-16 units"):
        import_reviews(run.run_dir, path)


# --- Argilla ------------------------------------------------------------------------------------------
def _ag_value(run: TaskRun, value: Any) -> Any:
    if run.kind.name == "multi_label":
        return list(value)
    return [{"label": s.type, "start": s.start, "end": s.end} for s in value]


def test_argilla_settings_and_suggestions(run: TaskRun, tmp_path: Path) -> None:
    files = export_queue(run.run_dir, tmp_path / "records.json", "argilla")
    settings = json.loads(files[1].read_text(encoding="utf-8"))
    q = settings["questions"][0]
    assert q["name"] == "label"
    if run.kind.name == "multi_label":
        assert q["settings"]["type"] == "multi_label_selection"
    else:
        assert q["settings"]["type"] == "span" and q["settings"]["field"] == "text"
        assert q["settings"]["allow_overlapping"] is False
    assert [o["value"] for o in q["settings"]["options"]] == list(TOPICS if run.kind.name == "multi_label" else TYPES)
    for rec in json.loads(files[0].read_text(encoding="utf-8")):
        want = _ag_value(run, run.llm[rec["id"]])
        sugg = rec["suggestions"].get("label")
        if not want:
            assert sugg is None
            continue
        assert sugg["value"] == want and len(sugg["score"]) == len(want)


def test_argilla_flat_export_import(run: TaskRun, tmp_path: Path) -> None:
    """`dataset.records.to_list(flatten=True)`: "<question>.responses", ".users", ".status" per record."""
    export_queue(run.run_dir, tmp_path / "records.json", "argilla")
    records = [
        {"id": i, "text": run.texts[i], "label.responses": [_ag_value(run, v)], "label.responses.users": ["u-1"],
         "label.responses.status": ["submitted"]}
        for i, v in run.human.items()
        if v or run.kind.name == "spans"  # argilla-server takes no empty multi-label answer
    ]
    path = tmp_path / "ag.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    summary = import_reviews(run.run_dir, path)
    assert summary.fmt == "argilla" and summary.reviewers == ("u-1",)
    assert final_labels(run, tmp_path / "final.jsonl") == {
        i: v if (v or run.kind.name == "spans") else None for i, v in run.human.items()}


def test_two_reviewers_majority_on_encoded_values(tmp_path: Path) -> None:
    """The review rule compares encoded annotations: two reviewers agreeing beat a third."""
    run = make_task_run(tmp_path, "spans")
    out = tmp_path / "queue.csv"
    export_queue(run.run_dir, out, "csv")
    other = {i: (Span(0, 1, "PER", run.texts[i][0]),) for i in run.human}
    for name, cells in (("a", run.human), ("b", run.human), ("c", other)):
        path = tmp_path / f"{name}.csv"
        path.write_bytes(out.read_bytes())
        _fill_csv(path, {i: _cell(run, v) for i, v in cells.items()}, reviewer=name)
        import_reviews(run.run_dir, path)
    assert final_labels(run, tmp_path / "final.jsonl") == run.human


# --- the live pull's readers, without a server ----------------------------------------------------------
def test_live_pull_readers_and_check(tmp_path: Path) -> None:
    """Label Studio's and Argilla's pulled answers become the stored encodings; a bad one is one line."""
    from labeler.review.live_argilla import pulled_from_records
    from labeler.review.live_common import plan_pull
    from labeler.review.live_labelstudio import pulled_from_export
    from labeler.review.tasktype_formats import pull_check
    from labeler.store import RunStore

    run = make_task_run(tmp_path, "spans")
    files = export_queue(run.run_dir, tmp_path / "tasks.json", "labelstudio")
    ls = pulled_from_export(_ls_export(run, json.loads(files[0].read_text())), kind=run.kind)
    ag = pulled_from_records(
        [{"id": f"r{i}", "external_id": i, "responses": [{"user_id": "u9", "status": "submitted", "values": {
            "label": {"value": [{"label": s.type, "start": s.start, "end": s.end} for s in v]}}}]}
         for i, v in run.human.items()],
        kind=run.kind,
    )
    store = RunStore.open(run.run_dir)
    try:
        check = pull_check(run.kind, store)
        assert check is not None
        for pulled, source in ((ls, "labelstudio"), (ag, "argilla")):
            plan = plan_pull({}, pulled, source=source, items=run.texts, labels=TYPES, check=check)
            assert {r.item_id: run.kind.decode(r.label) for r in plan.put} == run.human
        bad = replace(ag[0], label='[{"start": 0, "end": 12, "type": "PER"}, {"start": 4, "end": 8, "type": "ORG"}]')
        with pytest.raises(ReviewError, match=r"^answer rt00:u9 \(item t00\): spans 0-12 .* overlap; the task"):
            plan_pull({}, [bad], source="argilla", items=run.texts, labels=TYPES, check=check)
    finally:
        store.close()


def _with_element_confidences(run: TaskRun) -> dict[str, dict[str, float]]:
    """Give every item's elements their own confidences (0.31, 0.52, 0.73, ... by position) in the combined
    rows, as `labeler.confidence.elements` stores them; returns item id -> element -> confidence."""
    from labeler.store import RunStore
    from labeler.store.rows import CombinedRow

    want = {}
    rows = []
    for i, llm in run.llm.items():
        dist = {e: round(0.31 + 0.21 * j, 2) for j, e in enumerate(run.kind.elements(llm))}
        want[i] = dist
        rows.append(CombinedRow(i, run.kind.encode(llm), min(dist.values(), default=None), dist, 1.0, None, 0.0,
                                False, {"default": run.kind.encode(llm)}))
    store = RunStore.open(run.run_dir)
    try:
        store.put_combined(rows, signature="test")
    finally:
        store.close()
    return want


def test_review_tools_score_each_element_with_its_own_confidence(run: TaskRun, tmp_path: Path) -> None:
    want = _with_element_confidences(run)
    tasks = json.loads(export_queue(run.run_dir, tmp_path / "tasks.json", "labelstudio")[0].read_text("utf-8"))
    checked = 0
    for t in tasks:
        item = t["data"]["item_id"]
        own = [want[item][e] for e in run.kind.elements(run.llm[item])]
        got = t["predictions"][0]["result"]
        if run.kind.name == "spans":  # every region its own span's confidence
            assert [r["score"] for r in got] == own
        elif own:  # one choices result: Label Studio scores a result, the lowest of its labels
            assert got[0]["score"] == min(own)
        checked += len(own)
    records = json.loads(export_queue(run.run_dir, tmp_path / "records.json", "argilla")[0].read_text("utf-8"))
    for rec in records:
        own = [want[rec["id"]][e] for e in run.kind.elements(run.llm[rec["id"]])]
        sugg = rec["suggestions"].get("label")
        assert (sugg is None) if not own else sugg["score"] == own
    assert checked >= 4 and any(len(set(v.values())) > 1 for v in want.values())  # distinct scores were compared
