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


# --- issue 23 (5, 8): reviews carry where they came from; a project is its server and id --------------
def ls_project_export(tasks: list[dict[str, Any]], answers: dict[int, dict[str, str]], project: int) -> Any:
    """ls_export, with the project id Label Studio's JSON export writes on every task and annotation."""
    out = ls_export(tasks, answers)
    for t in out:
        t["project"] = project
        for ann in t["annotations"]:
            ann["project"] = project
    return out


def test_another_projects_export_is_refused_naming_both_and_never_rewrites_the_runs(
    run: Path, tmp_path: Path
) -> None:
    from labeler.errors import ReviewError

    tasks = ls_tasks(run, tmp_path)[:6]
    a, b, c, d, e, f = (t["data"]["item_id"] for t in tasks)
    one = ls_project_export(tasks[:4], {1: {a: "sport", b: "sport", c: "sport", d: "sport"}}, project=1)
    assert import_reviews(run, write_json(tmp_path / "p1.json", one)).added == 4
    # project 4 covers the same items: user 1 answered a and b there too, user 2 answered e; c, d not at all
    four = ls_project_export(tasks, {1: {a: "tech", b: "tech"}, 2: {e: "business", f: "tech"}}, project=4)
    with pytest.raises(ReviewError) as err:
        import_reviews(run, write_json(tmp_path / "p4.json", four))
    assert str(err.value) == (
        "this run is reviewed through labelstudio project 1; the file is project 4 — "
        "pass --other-project to import it anyway"
    )
    assert {k: r.label for k, r in stored_reviews(run).items()} == {(i, "1"): "sport" for i in (a, b, c, d)}
    s = import_reviews(run, tmp_path / "p4.json", other_project=True)
    assert (s.added, s.changed, s.removed) == (2, 0, 0)  # project 1's reviews of a..d are neither replaced nor removed
    assert any("2 answers of labelstudio project 4 left out" in w for w in s.warnings)
    got = {k: (r.label, r.origin) for k, r in stored_reviews(run).items()}
    assert got == {
        **{(i, "1"): ("sport", "labelstudio - 1") for i in (a, b, c, d)},
        (e, "2"): ("business", "labelstudio - 4"),
        (f, "2"): ("tech", "labelstudio - 4"),
    }
    # project 1's newer export (d deleted) syncs project 1 only: project 4's reviews stay
    newer = ls_project_export(tasks[:4], {1: {a: "sport", b: "sport", c: "sport"}}, project=1)
    s = import_reviews(run, write_json(tmp_path / "p1b.json", newer))
    assert (s.removed, s.unchanged) == (1, 3)
    assert set(stored_reviews(run)) == {(a, "1"), (b, "1"), (c, "1"), (e, "2"), (f, "2")}


def test_a_file_that_names_no_project_is_the_runs_project(run: Path, tmp_path: Path) -> None:
    tasks = ls_tasks(run, tmp_path)[:3]
    a, b, _ = (t["data"]["item_id"] for t in tasks)
    assert import_reviews(run, write_json(tmp_path / "p1.json", ls_project_export(tasks, {1: {a: "sport"}}, 1))).added
    unnamed = ls_export(tasks, {1: {a: "tech", b: "sport"}})  # no "project" on the tasks (an older export)
    s = import_reviews(run, write_json(tmp_path / "x.json", unnamed))
    assert (s.added, s.changed) == (1, 1)
    assert {r.origin for r in stored_reviews(run).values()} == {"labelstudio - 1"}


def test_an_export_naming_no_project_then_one_naming_it_sync_as_one(run: Path, tmp_path: Path) -> None:
    tasks = ls_tasks(run, tmp_path)[:3]
    a, b, _ = (t["data"]["item_id"] for t in tasks)
    assert import_reviews(run, write_json(tmp_path / "x.json", ls_export(tasks, {1: {a: "tech", b: "sport"}}))).added
    s = import_reviews(run, write_json(tmp_path / "p1.json", ls_project_export(tasks, {1: {a: "sport"}}, 1)))
    assert (s.changed, s.removed, s.warnings) == (1, 1, ())  # nothing left out: the first file was project 1's
    assert {k: r.label for k, r in stored_reviews(run).items()} == {(a, "1"): "sport"}


def test_server_key_makes_one_server_of_its_spellings() -> None:
    from labeler.review.origin import Origin, server_key

    same = ["http://localhost:8080", "http://127.0.0.1:8080/", "HTTP://LocalHost:8080//", "http://[::1]:8080"]
    assert {server_key(u) for u in same} == {"http://127.0.0.1:8080"}
    assert server_key("https://ls.example.org:443/") == server_key("https://LS.example.org") == "https://ls.example.org"
    assert server_key("http://h:80/ls/") == "http://h/ls" and server_key("http://h:8081") != server_key("http://h")
    o = Origin("argilla", "http://127.0.0.1:6900", "news review r1")
    assert Origin.parse(o.key()) == o and o.describe() == "argilla dataset news review r1 at http://127.0.0.1:6900"


def test_which_stored_reviews_a_sync_may_rewrite() -> None:
    from labeler.review.origin import claims

    live = "labelstudio http://127.0.0.1:8080 1"
    assert claims(None, live) and claims(live, live)  # reviews from before origins; its own
    assert claims("labelstudio - 1", live) and claims("labelstudio - -", live)  # a file of project 1, of none
    assert not claims("labelstudio - 4", live) and not claims("labelstudio http://10.0.0.2:8080 1", live)
    assert claims(live, "labelstudio - -") and not claims("csv - -", live)


def test_push_via_localhost_pull_via_127_and_a_file_of_another_project(tmp_path: Path) -> None:
    import httpx2
    from live_runs import make_run as make_live_run
    from test_review_live_units import FakeLabelStudio

    from labeler.errors import ReviewError
    from labeler.review.live_sync import pull_run, push_run

    run_dir, truth = make_live_run(tmp_path)
    fake = FakeLabelStudio()
    t = httpx2.MockTransport(fake)
    env = {"LABEL_STUDIO_URL": "http://localhost:8080", "LABEL_STUDIO_API_KEY": fake.REFRESH}
    s = push_run(run_dir, tool="labelstudio", gold_share=0.1, env=env, transport=t)
    for task in fake.tasks:
        item = task["data"]["item_id"]
        res = [{"from_name": "label", "value": {"choices": [truth[item]]}}]
        task["annotations"] = [{"id": 1, "completed_by": 7, "updated_at": "t1", "result": res}]
    other = {**env, "LABEL_STUDIO_URL": "http://127.0.0.1:8080/"}
    got = pull_run(run_dir, tool="labelstudio", env=other, transport=t)
    assert got.plan.added == s.queue and [(q.reviewer, q.gold_accuracy) for q in got.quality] == [("7", 1.0)]
    store = RunStore.open(run_dir)
    meta = json.loads(store.get_meta("labelstudio_sync") or "{}")
    store.close()
    assert list(meta["projects"]) == ["http://127.0.0.1:8080 1"] and meta["last"] == "http://127.0.0.1:8080 1"
    assert {r.origin for r in stored_reviews(run_dir).values()} == {"labelstudio http://127.0.0.1:8080 1"}
    # a pull through the third spelling changes nothing
    again = pull_run(run_dir, tool="labelstudio", env={**env, "LABEL_STUDIO_URL": "http://LOCALHOST:8080"}, transport=t)
    assert (again.plan.added, again.plan.changed, again.removed) == (0, 0, 0)
    # project 4's export of the same items
    four = [{**task, "id": k + 1, "project": 4} for k, task in enumerate(fake.tasks)]
    with pytest.raises(ReviewError) as err:
        import_reviews(run_dir, write_json(tmp_path / "p4.json", four))
    assert str(err.value) == (
        "this run is reviewed through labelstudio project 1 at http://127.0.0.1:8080; the file is project 4 — "
        "pass --other-project to import it anyway"
    )
    # project 1's own export is the live project: it syncs the pulled reviews
    one = [{**task, "id": k + 1, "project": 1} for k, task in enumerate(fake.tasks)]
    assert import_reviews(run_dir, write_json(tmp_path / "p1.json", one)).unchanged == s.queue


# --- issue 23 (9): reviewer notes and correction reasons leave the run, as written ---------------------
NOTE = "  \tindented, kept as written\n=HYPERLINK(\"http://x\")\x1b[2J"


def test_notes_and_reasons_reach_every_export_format_verbatim(run: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from labeler.cli import main
    from labeler.review.common import NOTE as NOTE_Q
    from labeler.review.common import REASON

    tasks = ls_tasks(run, tmp_path)[:2]
    a, b = (t["data"]["item_id"] for t in tasks)
    export = ls_export(tasks, {1: {a: "tech", b: "sport"}})
    first = export[0]["annotations"][0]
    first["result"] += [
        {"from_name": REASON, "to_name": "text", "type": "choices", "value": {"choices": ["model error"]}},
        {"from_name": NOTE_Q, "to_name": "text", "type": "textarea", "value": {"text": [NOTE]}},
    ]
    import_reviews(run, write_json(tmp_path / "ls.json", export))
    assert stored_reviews(run)[(a, "1")].note == NOTE  # leading spaces and tabs are not stripped on import
    outs = {}
    for fmt in ("csv", "jsonl", "parquet"):
        outs[f"export.{fmt}"] = tmp_path / f"final.{fmt}"
        assert main(["export", str(run), "--out", str(outs[f"export.{fmt}"])]) == 0
        outs[f"merge.{fmt}"] = tmp_path / f"merged.{fmt}"
        assert main(["review", "merge", str(run), "--out", str(outs[f"merge.{fmt}"])]) == 0
    for name, path in outs.items():
        if path.suffix == ".parquet":
            rows = pq.read_table(path).to_pylist()
        elif path.suffix == ".jsonl":
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        else:
            text = path.read_text(encoding="utf-8")
            assert "\x1b" not in text, name  # no terminal escape reaches a CSV for people
            rows = list(csv.DictReader(text.splitlines(keepends=True)))
            cells = [v for r in rows for v in r.values() if v]
            assert not any(c.lstrip()[:1] in "=+-@" for c in cells if "HYPERLINK" in c), name
        by_id = {r["id"]: r for r in rows}
        assert json.loads(by_id[a]["notes"]) == {"1": NOTE}, name
        assert json.loads(by_id[a]["reviewer_reasons"]) == {"1": "model error"}, name
        assert json.loads(by_id[b]["notes"]) == {} and json.loads(by_id[b]["reviewer_reasons"]) == {}, name


def test_a_csv_note_keeps_its_leading_spaces(run: Path, tmp_path: Path) -> None:
    q = export_queue(run, tmp_path / "q.csv", "csv")[0]
    with q.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows[0].update(human_label="sport", reviewer="ann", note="\t  two lines\n  of note ")
    with q.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    import_reviews(run, q)
    assert stored_reviews(run)[(rows[0]["id"], "ann")].note == "\t  two lines\n  of note "


# --- issue 23: the Argilla SDK's own output stays out of labeler's unless --debug -----------------------
@pytest.mark.parametrize("debug", [False, True])
def test_argilla_sdk_noise_stays_out_of_the_output_unless_debug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], debug: bool
) -> None:
    import logging
    import sys
    import warnings

    from live_runs import make_run as make_live_run

    from labeler.cli import main
    from labeler.review import live_argilla

    def noisy_push(url: str, key: str, ordered: Any, *, name: str, **_: Any) -> Any:
        # what argilla 2.8 printed between labeler's lines: a UserWarning, a tqdm bar, a batch-size WARNING
        warnings.warn("Workspace not provided. Using default workspace: argilla", UserWarning, stacklevel=1)
        sys.stderr.write("Sending records...: 100%|██████████| 1/1 [00:00<00:00, 10.0batch/s]\n")
        logging.getLogger("argilla.sdk").warning("DatasetRecords: Setting batch size to 41")
        return live_argilla.Pushed(name, True, len(ordered), 0)

    monkeypatch.setattr(live_argilla, "push", noisy_push)
    monkeypatch.setenv("ARGILLA_API_URL", "http://127.0.0.1:6900")
    monkeypatch.setenv("ARGILLA_API_KEY", "owner.apikey")
    run_dir, _ = make_live_run(tmp_path)
    logging.getLogger("argilla").handlers = [handler := logging.StreamHandler(sys.stderr)]
    try:
        argv = ["--debug"] * debug + ["review", "push", str(run_dir), "--tool", "argilla"]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # a UserWarning is shown, not an error, as in a user's shell
            assert main(argv) == 0
    finally:
        logging.getLogger("argilla").removeHandler(handler)
    out = capsys.readouterr()
    said = out.out + out.err + "".join(str(w.message) for w in caught)
    assert "argilla created project" in out.out  # labeler's own line is there either way
    noise = ("Workspace not provided", "Sending records", "Setting batch size")
    if debug:
        assert all(n in said for n in noise), said
    else:
        assert not any(n in said for n in noise), said
