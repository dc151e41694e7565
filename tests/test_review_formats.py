"""Every export shape of the review tools read (or refused with the way out), never a silent import of
nothing; Argilla's suggestion agent, task distribution and response statuses; scores with 4 decimals."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest
from test_review import LABELS, ls_export, make_run, queue_of

from labeler.errors import ReviewError
from labeler.review.argilla import AGENT_PATTERN, suggestion_agent
from labeler.review.importer import import_reviews
from labeler.review.queue_export import export_queue


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return make_run(tmp_path)[0]


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def ls_tasks(run_dir: Path, tmp_path: Path) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = json.loads(export_queue(run_dir, tmp_path / "t.json", "labelstudio")[0].read_text())
    return tasks


# --- Argilla's agent, distribution; scores ------------------------------------------------------------------
def test_argilla_suggestion_agent_is_one_argilla_server_accepts(run: Path, tmp_path: Path) -> None:
    records = json.loads(export_queue(run, tmp_path / "a.json", "argilla")[0].read_text())
    agents = {r["suggestions"]["label"]["agent"] for r in records if r["suggestions"]}
    assert agents == {"labeler/r1/test-model"}
    for agent in (*agents, suggestion_agent("run 1", "llama3@8b (q4)"), suggestion_agent("r", "Qwen/Qwen2.5:0.5b")):
        assert re.fullmatch(AGENT_PATTERN, agent), agent
    assert suggestion_agent("r:1", "a@b (c)") == "labeler/r:1/a-b -c-"
    assert not re.fullmatch(AGENT_PATTERN, "test-model (labeler run r1)")  # what we wrote before


def test_overlap_goes_into_argilla_distribution_and_label_studio_project(run: Path, tmp_path: Path) -> None:
    settings = json.loads(export_queue(run, tmp_path / "a.json", "argilla", overlap=3)[1].read_text())
    assert settings["distribution"] == {"strategy": "overlap", "min_submitted": 3}
    project = json.loads(export_queue(run, tmp_path / "t.json", "labelstudio", overlap=3)[2].read_text())
    assert (project["maximum_annotations"], project["overlap_cohort_percentage"]) == (3, 100)
    default = json.loads(export_queue(run, tmp_path / "d.json", "argilla")[1].read_text())
    assert default["distribution"] == {"strategy": "overlap", "min_submitted": 1}
    with pytest.raises(ReviewError, match="at least 1"):
        export_queue(run, tmp_path / "x.json", "argilla", overlap=0)


def test_scores_are_written_with_four_decimals(run: Path, tmp_path: Path) -> None:
    assert any(len(repr(e.confidence)) > 6 for e in queue_of(run))  # e.g. 0.7 + 0.29 = 0.9899999999999999
    files = [
        *export_queue(run, tmp_path / "t.json", "labelstudio"),
        *export_queue(run, tmp_path / "a.json", "argilla"),
        *export_queue(run, tmp_path / "q.csv", "csv"),
    ]
    for f in files:
        assert not re.search(r"\d\.\d{5,}", f.read_text(encoding="utf-8")), f.name


# --- Label Studio's shapes ------------------------------------------------------------------------------------
def test_a_task_missing_from_the_default_export_keeps_its_review_and_says_why(run: Path, tmp_path: Path) -> None:
    tasks = ls_tasks(run, tmp_path)
    result = [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["sport"]}}]
    for n, t in enumerate(tasks[:4]):
        t["annotations"] = [{"id": n + 1, "completed_by": 7, "result": result, "was_cancelled": False}]
    s = import_reviews(run, write_json(tmp_path / "all.json", tasks[:4]))
    assert s.added == 4 and not any("not in this file" in w for w in s.warnings)
    # the 4th task's only annotation is deleted: Label Studio's default export leaves the task out
    s = import_reviews(run, write_json(tmp_path / "default.json", tasks[:3]))
    assert (s.removed, s.unchanged) == (0, 3)
    assert any(w.startswith("1 items reviewed before are not in this file") and "download_all_tasks" in w
               for w in s.warnings), s.warnings  # fmt: skip


def test_ground_truth_is_read_alike_by_the_file_import_and_the_live_pull(run: Path, tmp_path: Path) -> None:
    from labeler.review.live_labelstudio import pulled_from_export
    from labeler.store import RunStore

    tasks = ls_tasks(run, tmp_path)[:3]
    result = [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["sport"]}}]
    for n, t in enumerate(tasks):
        t["annotations"] = [{"id": n + 1, "completed_by": 7, "result": result, "was_cancelled": False,
                             "ground_truth": n < 2}]  # fmt: skip
    s = import_reviews(run, write_json(tmp_path / "gt.json", tasks))
    assert s.adjudicated == 2 == sum(p.adjudication for p in pulled_from_export(tasks))
    store = RunStore.open(run)
    adjudicated = {r.item_id for revs in store.reviews().values() for r in revs if r.adjudication}
    store.close()
    assert adjudicated == {t["data"]["item_id"] for t in tasks[:2]}


def test_a_skip_only_label_studio_export_says_what_it_held(run: Path, tmp_path: Path) -> None:
    tasks = ls_tasks(run, tmp_path)
    flat = [  # JSON-MIN of a project whose every annotation was skipped
        {**t["data"], "id": 100 + n, "annotator": 7, "annotation_id": n, "was_cancelled": True}
        for n, t in enumerate(tasks[:3])
    ]
    with pytest.raises(ReviewError, match=r"holds 3 records, all skipped \(cancelled\) in Label Studio"):
        import_reviews(run, write_json(tmp_path / "skipped.json", flat))
    with pytest.raises(ReviewError, match=r"empty list \(0 tasks or records\).*only skips"):
        import_reviews(run, write_json(tmp_path / "empty.json", []))


def test_label_studio_json_min_export_is_read(run: Path, tmp_path: Path) -> None:
    tasks = ls_tasks(run, tmp_path)
    flat = [  # as Label Studio's JSON-MIN converter writes it: data keys, controls, annotator, annotation_id
        {**t["data"], "id": 100 + n, "label": "sport", "annotator": 7, "annotation_id": n, "lead_time": 2.5}
        for n, t in enumerate(tasks[:5])
    ]
    flat.append({**tasks[5]["data"], "id": 200})  # a task nobody annotated
    s = import_reviews(run, write_json(tmp_path / "min.json", flat))
    assert (s.fmt, s.reviews, s.reviewers) == ("labelstudio-min", 5, ("7",))


def test_label_studio_csv_export_is_read_and_emails_are_joined_by_a_reviewer_map(run: Path, tmp_path: Path) -> None:
    tasks = ls_tasks(run, tmp_path)
    rows = [
        {**t["data"], "id": 100 + n, "label": LABELS[n % 3], "annotator": "ann@example.org", "annotation_id": n}
        for n, t in enumerate(tasks[:4])
    ]
    path = tmp_path / "ls.csv"
    keys = sorted({"annotator", "annotation_id", "created_at", "updated_at", "lead_time"} | set(rows[0]))
    with path.open("w", encoding="utf-8", newline="") as fh:  # as Label Studio writes it
        w = csv.DictWriter(fh, fieldnames=keys, quoting=csv.QUOTE_NONNUMERIC)
        w.writeheader()
        w.writerows(rows)
    s = import_reviews(run, path)
    assert (s.fmt, s.reviews, s.reviewers) == ("labelstudio-csv", 4, ("ann@example.org",))
    assert any("--reviewer-map" in w for w in s.warnings)
    names = tmp_path / "reviewers.csv"
    names.write_text("id,name\nann@example.org,ann\n7,ann\n", encoding="utf-8")
    s = import_reviews(run, path, reviewer_map=names)
    assert s.reviewers == ("ann",) and s.added == 4


def test_a_csv_that_is_neither_ours_nor_label_studio_is_refused(run: Path, tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("item,answer\ni01,sport\n", encoding="utf-8")
    with pytest.raises(ReviewError, match=r"neither the review CSV .* its columns: item, answer"):
        import_reviews(run, path)


def test_zero_answers_from_label_studio_say_why(run: Path, tmp_path: Path) -> None:
    tasks = ls_tasks(run, tmp_path)
    with pytest.raises(ReviewError, match=r"none of its \d+ tasks has an annotation \(only the LLM's predictions\)"):
        import_reviews(run, write_json(tmp_path / "none.json", [{**t, "annotations": []} for t in tasks]))
    skipped = ls_export(tasks, {})  # only the cancelled annotation of each task
    with pytest.raises(ReviewError, match=r"all \d+ annotations were skipped \(cancelled\)"):
        import_reviews(run, write_json(tmp_path / "skipped.json", skipped))
    renamed = ls_export(tasks, {1: {t["data"]["item_id"]: "sport" for t in tasks}})
    for t in renamed:
        for a in t["annotations"]:
            for r in a["result"]:
                r["from_name"] = "sentiment"
    path = write_json(tmp_path / "renamed.json", renamed)
    message = r"answer in 'sentiment'.*name the Choices control \"label\".*--label-control sentiment"
    with pytest.raises(ReviewError, match=message):
        import_reviews(run, path)
    s = import_reviews(run, path, label_control="sentiment")  # or pass the name
    assert s.reviews == len(tasks)


def test_zero_answers_from_our_csv_say_why(run: Path, tmp_path: Path) -> None:
    (path,) = export_queue(run, tmp_path / "q.csv", "csv")
    with pytest.raises(ReviewError, match=r"none of its \d+ rows has a human_label yet"):
        import_reviews(run, path, reviewer="carol")


# --- Argilla's shapes and statuses ------------------------------------------------------------------------------
def argilla_records(run: Path, tmp_path: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads(export_queue(run, tmp_path / "a.json", "argilla")[0].read_text())
    return records


def test_argilla_json_lines_are_read(run: Path, tmp_path: Path) -> None:
    records = argilla_records(run, tmp_path)
    for r in records[:3]:
        r["responses"] = {"label": [{"value": "sport", "user_id": "u1", "status": "submitted"}]}
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    s = import_reviews(run, path)
    assert (s.fmt, s.reviews, s.reviewers) == ("argilla-jsonl", 3, ("u1",))


def test_argilla_rest_shape_is_read_and_statuses_respected(run: Path, tmp_path: Path) -> None:
    ids = [e.item_id for e in queue_of(run)[:2]]

    def response(user: str, status: str | None) -> dict[str, Any]:
        r: dict[str, Any] = {"values": {"label": {"value": "tech"}}, "user_id": user, "updated_at": "2025-01-02"}
        return r if status is None else {**r, "status": status}

    items = [
        {
            "id": f"6f0c8f4e-0000-4000-8000-00000000000{n}",  # the server's id; ours is external_id
            "external_id": i,
            "fields": {"text": "t"},
            "responses": [  # u4: no status where the shape carries them, so not submitted
                response("u1", "submitted"),
                response("u2", "draft"),
                response("u3", "discarded"),
                response("u4", None),
            ],
        }
        for n, i in enumerate(ids)
    ]
    path = write_json(tmp_path / "rest.json", {"items": items, "total": 2})
    s = import_reviews(run, path)
    assert (s.fmt, s.reviews, s.reviewers) == ("argilla-rest", 2, ("u1",))
    assert any("2 draft" in w and "--include-drafts" in w for w in s.warnings)
    s = import_reviews(run, path, include_drafts=True)
    assert s.reviewers == ("u1", "u2") and (s.added, s.unchanged) == (2, 2)


def test_argilla_to_json_has_no_status_so_its_responses_do_not_count(run: Path, tmp_path: Path) -> None:
    records = argilla_records(run, tmp_path)
    records[0]["responses"] = {"label": [{"value": "sport", "user_id": "u1"}]}
    with pytest.raises(ReviewError, match=r"carries a status; .*to_list\(flatten=True\)"):
        import_reviews(run, write_json(tmp_path / "a.json", records))


def argilla_shapes(records: list[dict[str, Any]], statuses: dict[str, str]) -> dict[str, Any]:
    """The same responses (user -> status) on the first record, as each Argilla shape writes them."""
    first = records[0]
    nested = [{**r, "responses": {}} for r in records]
    nested[0]["responses"] = {"label": [{"value": "sport", "user_id": u, "status": st} for u, st in statuses.items()]}
    flat = [{"id": r["id"], "text": r["fields"]["text"]} for r in records]
    flat[0].update({"label.responses": ["sport"] * len(statuses), "label.responses.users": list(statuses),
                    "label.responses.status": list(statuses.values())})  # fmt: skip
    listed = [{**r, "responses": []} for r in records]
    listed[0]["responses"] = [
        {"question_name": "label", "value": "sport", "user_id": u, "status": st} for u, st in statuses.items()
    ]
    rest = {
        "items": [
            {"id": f"srv-{n}", "external_id": r["id"], "fields": r["fields"], "responses": []}
            for n, r in enumerate(records)
        ]
    }
    rest["items"][0]["responses"] = [
        {"values": {"label": {"value": "sport"}}, "user_id": u, "status": st} for u, st in statuses.items()
    ]
    assert first["id"] == rest["items"][0]["external_id"]
    return {"nested": nested, "flat": flat, "listed": listed, "rest": rest}


@pytest.mark.parametrize("shape", ["nested", "flat", "listed", "rest", "jsonl"])
def test_one_rule_of_response_status_for_every_argilla_shape(run: Path, tmp_path: Path, shape: str) -> None:
    statuses = {"u1": "submitted", "u2": "draft", "u3": "discarded"}
    shapes = argilla_shapes(argilla_records(run, tmp_path), statuses)
    if shape == "jsonl":
        path = tmp_path / "records.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in shapes["flat"]), encoding="utf-8")
    else:
        path = write_json(tmp_path / f"{shape}.json", shapes[shape])
    s = import_reviews(run, path)
    assert (s.reviews, s.reviewers) == (1, ("u1",))  # the discarded and the draft answers never count
    left = next(w for w in s.warnings if w.startswith("left out"))
    assert "1 discarded" in left and "1 draft" in left and "without a status" not in left
    s = import_reviews(run, path, include_drafts=True)
    assert s.reviewers == ("u1", "u2")  # a draft with --include-drafts; still never the discarded one


def test_argilla_live_pull_reads_status_by_the_same_rule() -> None:
    from labeler.review.argilla import response_counts
    from labeler.review.live_argilla import pulled_from_records

    responses = [{"user_id": u, "status": st, "values": {"label": {"value": "sport"}}}
                 for u, st in (("u1", "submitted"), ("u2", "draft"), ("u3", "discarded"), ("u4", None))]  # fmt: skip
    got = pulled_from_records([{"id": "srv", "external_id": "i1", "responses": responses}])
    assert [p.reviewer for p in got] == [r["user_id"] for r in responses if response_counts(r["status"])] == ["u1"]


def test_zero_answers_from_argilla_say_why(run: Path, tmp_path: Path) -> None:
    records = argilla_records(run, tmp_path)
    with pytest.raises(ReviewError, match=r"none of its \d+ records has a response"):
        import_reviews(run, write_json(tmp_path / "none.json", records))
    records[0]["responses"] = {"label": [{"value": "sport", "user_id": "u1", "status": "draft"}]}
    with pytest.raises(ReviewError, match=r"no submitted response to 'label' \(1 draft\); pass --include-drafts"):
        import_reviews(run, write_json(tmp_path / "drafts.json", records))
    records[0]["responses"] = {"topic": [{"value": "sport", "user_id": "u1"}]}
    with pytest.raises(ReviewError, match=r"the responses answer 'topic'.*--label-control"):
        import_reviews(run, write_json(tmp_path / "topic.json", records))
    with pytest.raises(ReviewError, match=r"empty list \(0 tasks or records\): no answers yet.*skipped"):
        import_reviews(run, write_json(tmp_path / "empty.json", []))


def test_output_to_a_closed_pipe_ends_quietly(run: Path, tmp_path: Path) -> None:
    """`labeler review import ... | head -1`: no BrokenPipeError traceback, an exit like a killed writer's."""
    import subprocess
    import sys

    tasks = ls_tasks(run, tmp_path)
    result = [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["sport"]}}]
    for n, t in enumerate(tasks):
        t["annotations"] = [{"id": n + 1, "completed_by": 7, "result": result, "was_cancelled": False}]
    path = write_json(tmp_path / "all.json", tasks)
    code = "import sys; from labeler.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, "review", "import", str(run), str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before labeler writes
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) in (0, 141) and "Traceback" not in err and "BrokenPipe" not in err, err


def test_an_empty_label_studio_csv_export_says_no_annotations_yet(run: Path, tmp_path: Path) -> None:
    tasks = ls_tasks(run, tmp_path)[:2]
    path = tmp_path / "ls.csv"
    path.write_text("id,item_id,text\n" + "".join(f"{n},{t['data']['item_id']},x\n" for n, t in enumerate(tasks)))
    with pytest.raises(ReviewError, match=r"a Label Studio CSV export with no annotations yet \(2 rows"):
        import_reviews(run, path)
