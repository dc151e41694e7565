"""Importing again syncs instead of appending: one person is one reviewer across Label Studio's exports, one
answer per reviewer and item (the latest), changed answers replaced, deleted ones removed, nothing else
touched; and the final dataset takes its human labels from labeler.humans (gold among the votes)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from test_review import LABELS, ls_export, make_run, queue_of, stored_reviews

from labeler.review.common import Answer
from labeler.review.importer import import_reviews, keep_latest
from labeler.review.merge import final_rows
from labeler.review.queue_export import export_queue
from labeler.store import RunStore
from labeler.store.rows import Review


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return make_run(tmp_path)[0]


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def ls_tasks(run_dir: Path, tmp_path: Path) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = json.loads(export_queue(run_dir, tmp_path / "t.json", "labelstudio")[0].read_text())
    return tasks


def test_one_person_is_one_reviewer_in_both_label_studio_exports(run: Path, tmp_path: Path) -> None:
    tasks = ls_tasks(run, tmp_path)[:6]
    answers = {7: {t["data"]["item_id"]: "sport" for t in tasks}}
    default = ls_export(tasks, answers)  # completed_by: 7
    s = import_reviews(run, write_json(tmp_path / "default.json", default))
    assert s.reviewers == ("7",) and s.added == 6
    full = ls_export(tasks, answers)  # the export with user details: completed_by {"id", "email"}
    for t in full:
        for a in t["annotations"]:
            a["completed_by"] = {"id": a["completed_by"], "email": f"user{a['completed_by']}@example.org"}
    s = import_reviews(run, write_json(tmp_path / "full.json", full))
    assert s.reviewers == ("7",) and (s.added, s.unchanged, s.removed) == (0, 6, 0)
    assert {r for _, r in stored_reviews(run)} == {"7"}
    # a map names the person; an e-mail in it also names the id seen beside that e-mail
    names = tmp_path / "names.csv"
    names.write_text("user7@example.org,ann\n", encoding="utf-8")
    s = import_reviews(run, write_json(tmp_path / "full.json", full), reviewer_map=names)
    assert s.reviewers == ("ann",) and (s.added, s.removed) == (6, 6)  # renamed: the old name's answers go


def test_two_annotations_by_one_user_on_one_task_keep_the_latest(run: Path, tmp_path: Path) -> None:
    tasks = ls_tasks(run, tmp_path)[:2]
    export = ls_export(tasks, {1: {t["data"]["item_id"]: "sport" for t in tasks}})
    first = export[0]["annotations"][0]
    first["updated_at"] = "2025-03-02T10:00:00Z"
    older = json.loads(json.dumps(first))
    older.update(id=1, updated_at="2025-03-01T10:00:00Z")
    older["result"][0]["value"]["choices"] = ["tech"]
    export[0]["annotations"].append(older)  # later in the file, but older: dropped
    s = import_reviews(run, write_json(tmp_path / "dup.json", export))
    assert (s.reviews, s.duplicates) == (2, 1) and any("1 earlier answers" in w for w in s.warnings)
    assert stored_reviews(run)[(tasks[0]["data"]["item_id"], "1")].label == "sport"
    a = [Answer("r1", "x", "ann", "b", order=("", 1.0)), Answer("r2", "x", "ann", "c", order=("", 2.0))]
    assert keep_latest(a) == ([a[1]], 1) and keep_latest(reversed(a)) == ([a[1]], 1)


def test_reimport_adds_changes_and_removes_only_what_the_file_lists(run: Path, tmp_path: Path) -> None:
    tasks = ls_tasks(run, tmp_path)[:5]
    a, b, c, d, e = (t["data"]["item_id"] for t in tasks)
    first = ls_export(tasks, {1: {a: "sport", b: "sport", c: "sport", e: "sport"}})
    assert import_reviews(run, write_json(tmp_path / "v1.json", first)).added == 4
    store = RunStore.open(run)
    store.put_reviews([Review(c, "yan", "tech", source="tui")])  # another source on the same item
    store.close()
    # the newer export: b changed, c's annotation deleted, d new; e's task is not in this file at all
    second = ls_export(tasks[:4], {1: {a: "sport", b: "tech", d: "business"}})
    s = import_reviews(run, write_json(tmp_path / "v2.json", second))
    assert (s.added, s.changed, s.unchanged, s.removed) == (1, 1, 1, 1)
    got = {k: r.label for k, r in stored_reviews(run).items()}
    assert got == {(a, "1"): "sport", (b, "1"): "tech", (d, "1"): "business", (e, "1"): "sport", (c, "yan"): "tech"}


def fill_csv(path: Path, out: Path, answers: dict[str, str], reviewer: str | None = None) -> Path:
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r["human_label"] = answers.get(r["id"], "")
        r["reviewer"] = reviewer or ""
    with out.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return out


def test_a_csv_syncs_only_the_reviewers_it_speaks_for(run: Path, tmp_path: Path) -> None:
    (queue_csv,) = export_queue(run, tmp_path / "q.csv", "csv")
    ids = [e.item_id for e in queue_of(run)[:3]]
    carol = fill_csv(queue_csv, tmp_path / "carol.csv", dict.fromkeys(ids, "sport"))
    dave = fill_csv(queue_csv, tmp_path / "dave.csv", dict.fromkeys(ids, "tech"), reviewer="dave")
    assert import_reviews(run, carol, reviewer="carol").added == 3
    s = import_reviews(run, dave)  # every row names dave: carol's answers on the same items stay
    assert (s.added, s.removed) == (3, 0)
    carol2 = fill_csv(queue_csv, tmp_path / "carol2.csv", {ids[0]: "sport", ids[1]: "business"})
    s = import_reviews(run, carol2, reviewer="carol")  # she cleared the third and changed the second
    assert (s.added, s.changed, s.unchanged, s.removed) == (0, 1, 1, 1)
    got = {k: r.label for k, r in stored_reviews(run).items()}
    assert got == {
        (ids[0], "carol"): "sport",
        (ids[1], "carol"): "business",
        **{(i, "dave"): "tech" for i in ids},
    }


def test_final_dataset_counts_gold_as_a_vote(tmp_path: Path) -> None:
    run_dir, truth = make_run(tmp_path, gold=True)
    queue = queue_of(run_dir)
    tied, outvoted = queue[0].item_id, queue[1].item_id
    g = truth[tied]
    others = [lab for lab in LABELS if lab != g]
    store = RunStore.open(run_dir)
    store.put_reviews(
        [Review(tied, "ann", others[0], source="csv"), Review(tied, "bob", others[1], source="csv")]
        + [Review(outvoted, r, others[0], source="csv") for r in ("ann", "bob")]
    )
    try:
        rows = {r["id"]: r for r in final_rows(store)}
    finally:
        store.close()
    assert (rows[tied]["label"], rows[tied]["source"], rows[tied]["tie"]) == (g, "human", True)  # gold breaks it
    assert json.loads(rows[tied]["human_labels"]) == {"gold": g, "ann": others[0], "bob": others[1]}
    assert (rows[tied]["n_reviews"], rows[outvoted]["label"], rows[outvoted]["source"]) == (2, others[0], "human")
    unreviewed = next(i for i in truth if i not in (tied, outvoted))
    assert (rows[unreviewed]["source"], rows[unreviewed]["label"], rows[unreviewed]["n_reviews"]) == (
        "gold",
        truth[unreviewed],
        0,
    )
