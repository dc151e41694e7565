"""Multi-label and span tasks end to end (issue 19) through the scripted OpenAI-compatible stub on 127.0.0.1:
`labeler run` -> run store -> per-element confidence -> routing -> export. Every answer the stub gives is
scripted, so every stored annotation, dropped span, confidence, routing reason and exported cell is known
in advance."""

from __future__ import annotations

import csv
import json
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from fakes import write_csv, write_task
from openai_stub import StubServer, key_of

from labeler.config import TaskConfig, load_config
from labeler.errors import RunStoreError
from labeler.export import export_run
from labeler.label.pipeline import start_run
from labeler.review.router import route_run
from labeler.store import RunStore

FAST_RETRY = {"max_attempts": 2, "initial_wait": 0.0, "max_wait": 0.0}
MULTI_TEMPLATE = """\
[[system]]
{% if task_type == "multi_label" %}Name every topic that applies ({{ min_labels }} to {{ max_labels if max_labels \
is not none else label_names | length }}):{% else %}Mark the entities of these types:{% endif %}
{% for lab in labels %}
- {{ lab.name }}: {{ lab.description }}
{% endfor %}
Answer with JSON only.
[[user]]
{{ text }}
"""


@dataclass
class ScriptedStub(StubServer):
    """The stub, answering each item key's requests with its script in order: the first choice of every
    request takes the next answer, and a request for n samples the next n (the last answer repeats). A script
    under "<model>/<key>" answers that model only (ensemble members)."""

    answers: Mapping[str, Sequence[str]] = field(default_factory=dict)
    _served: dict[str, int] = field(default_factory=lambda: defaultdict(int), init=False)
    _script_lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def completion(self, body: Mapping[str, Any], *, bad_label: bool) -> dict[str, Any]:
        key, n = key_of(body.get("messages") or []), int(body.get("n") or 1)
        key = f"{body.get('model')}/{key}" if f"{body.get('model')}/{key}" in self.answers else key
        with self._script_lock:
            start = self._served[key]
            self._served[key] += n
        script = self.answers[key]
        texts = [script[min(start + i, len(script) - 1)] for i in range(n)]
        return {
            "id": f"chatcmpl-{key}-{start}",
            "object": "chat.completion",
            "model": str(body.get("model", "stub")),
            "choices": [{"index": i, "finish_reason": "stop", "message": {"role": "assistant", "content": t}}
                        for i, t in enumerate(texts)],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5 * n, "total_tokens": 10 + 5 * n},
        }


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Any:
    for var in ("OPENAI_BASE_URL", "LABELER_CACHE"):
        monkeypatch.delenv(var, raising=False)
    started: list[ScriptedStub] = []

    def start(answers: Mapping[str, Sequence[str]]) -> ScriptedStub:
        server = ScriptedStub(answers=answers).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def make_task(
    root: Path,
    stub: StubServer,
    texts: Mapping[str, str],
    *,
    task: Mapping[str, Any],
    labels: Sequence[str],
    confidence: Mapping[str, Any] | None = None,
    members: Sequence[Mapping[str, Any]] = (),
) -> TaskConfig:
    write_csv(root / "items.csv", [{"id": k, "text": t} for k, t in texts.items()])
    model = {"base_url": stub.base_url, "model": "stub-model", "profile": "openai", "max_output_tokens": 200}
    sections = {
        "retry": FAST_RETRY,
        "confidence": confidence or {"methods": ["consistency"], "samples": 5},
        "routing": {"audit_fraction": 0.0},
    }
    return load_config(write_task(root, labels=labels, model=model, sections=sections, task=task,
                                  template=MULTI_TEMPLATE, members=members), env={})


def labels_json(*names: str) -> str:
    return json.dumps({"labels": list(names)})


def spans_json(*spans: tuple[str, str]) -> str:
    return json.dumps({"spans": [{"text": t, "type": k} for t, k in spans]})


def stored(store: RunStore, member: str = "default") -> dict[str, Any]:
    return {r["item_id"]: r for r in store.iter_results(member=member)}


def queue_reasons(run_dir: Path) -> dict[str, tuple[str, ...]]:
    store = RunStore.open(run_dir)
    try:
        return {e.item_id: e.reasons for e in store.queue()}
    finally:
        store.close()


TOPICS = ("sport", "politics", "tech", "business")
MULTI_TEXTS = {
    "m1": "id=m1 The minister opened the stadium.",
    "m2": "id=m2 A new phone chip.",
    "m3": "id=m3 Rain tomorrow.",
    "m4": "id=m4 Nothing much.",
    "m5": "id=m5 Shares rose.",
}
MULTI_ANSWERS = {
    # answer, then 5 samples: sport 5/5, politics 2/5
    "m1": [labels_json("politics", "sport"), *[labels_json("sport", "politics")] * 2, *[labels_json("sport")] * 3],
    "m2": [labels_json("tech"), *[labels_json("tech")] * 5],
    "m3": [labels_json("weather"), labels_json("weather")],  # unknown label, also after the re-ask
    "m4": [labels_json(), labels_json()],  # empty where min_labels = 1, twice
    "m5": [labels_json("weather"), labels_json("business"), *[labels_json("business")] * 5],  # fixed by the re-ask
}


async def test_multi_label_run_stores_routes_and_exports_known_annotations(scripted: Any, tmp_path: Path) -> None:
    stub = scripted(MULTI_ANSWERS)
    task = make_task(tmp_path, stub, MULTI_TEXTS, task={"type": "multi_label", "min_labels": 1}, labels=TOPICS)
    run_dir, summary = await start_run(task, run_dir=tmp_path / "run", show_progress=False)
    assert summary.counts == {"labeled": 3, "failed": 2} and summary.dropped == 0

    store = RunStore.open(run_dir)
    try:
        res = stored(store)
        assert {k: r["label"] for k, r in res.items()} == {
            "m1": '["sport", "politics"]', "m2": '["tech"]', "m3": None, "m4": None, "m5": '["business"]'}
        assert json.loads(res["m1"]["distributions"]) == {"consistency": {"label sport": 1.0, "label politics": 0.4}}
        assert res["m1"]["confidence"] == pytest.approx(0.4)
        assert res["m2"]["confidence"] == 1.0 and res["m5"]["confidence"] == 1.0
        assert res["m3"]["reason"] == ("unparseable after one re-ask: label 'weather' is not one of: sport, politics, "
                                       "tech, business")
        assert res["m4"]["reason"] == ("unparseable after one re-ask: 0 labels where the task asks for at least 1 "
                                       "(task.min_labels)")
    finally:
        store.close()
    # the prompt rendered the label set with descriptions and the bound; the request carried the type's schema
    first = stub.requests_for("m2")[0]
    assert "Name every topic that applies (1 to 4):" in first.messages[0][1]
    assert "- politics: texts about politics" in first.messages[0][1]
    reask = next(s for s in stub.requests_for("m5") if s.is_reask)
    assert "label 'weather' is not one of: sport" in reask.messages[-1][1]

    plan, _ = route_run(run_dir)
    assert queue_reasons(run_dir) == {
        "m1": ("low_confidence: label politics 0.40",), "m3": ("failed",), "m4": ("failed",)}
    assert plan.flagged == 3

    export_run(run_dir, tmp_path / "out.parquet")
    table = pq.read_table(tmp_path / "out.parquet")
    assert str(table.schema.field("label").type) == "list<element: string>"
    assert dict(zip(table.column("id").to_pylist(), table.column("label").to_pylist(), strict=True)) == {
        "m1": ["sport", "politics"], "m2": ["tech"], "m3": None, "m4": None, "m5": ["business"]}
    export_run(run_dir, tmp_path / "out.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert rows[0]["label"] == ["sport", "politics"] and rows[0]["confidence"] == pytest.approx(0.4)
    assert json.loads(rows[0]["element_confidences"]) == {"label sport": 1.0, "label politics": 0.4}
    # conf_consistency: the item's confidence under the method, its lowest element confidence; none when failed
    assert {r["id"]: r["conf_consistency"] for r in rows} == {"m1": pytest.approx(0.4), "m2": 1.0, "m3": None,
                                                              "m4": None, "m5": 1.0}
    export_run(run_dir, tmp_path / "out.csv")
    with (tmp_path / "out.csv").open(encoding="utf-8", newline="") as fh:
        cells = {r["id"]: r["label"] for r in csv.DictReader(fh)}
    assert cells == {"m1": "sport; politics", "m2": "tech", "m3": "", "m4": "", "m5": "business"}
    # a label text no stage wrote (edited by hand): one line naming the item, not a traceback
    with sqlite3.connect(run_dir / "run.sqlite") as conn:
        conn.execute("UPDATE results SET label = 'tech, sport' WHERE item_id = 'm2'")
    with pytest.raises(RunStoreError, match=r"^item 'm2', column label: stored labels 'tech, sport' are not a JSON "
                                            r"list of label names; correct the review or result that holds it$"):
        export_run(run_dir, tmp_path / "bad.jsonl")


TYPES = ("PER", "LOC", "ORG")
SPAN_TEXTS = {
    "s1": "id=s1 Zoë met Ada in Köln 🎉.",
    "s2": "id=s2 New York again.",
    "s3": "id=s3 Short.",
    "s4": "id=s4 no names here",
    "s5": "id=s5 🎉 Paris\r\nand Lyon",
}
SPAN_ANSWERS = {
    # "Bob" is not in the text: dropped and counted; samples: Zoë 5/5, Köln 5/5, Ada 2/5
    "s1": [spans_json(("Zoë", "PER"), ("Ada", "PER"), ("Köln", "LOC"), ("Bob", "PER")),
           *[spans_json(("Zoë", "PER"), ("Ada", "PER"), ("Köln", "LOC"))] * 2,
           *[spans_json(("Zoë", "PER"), ("köln", "LOC"))] * 3],
    # "York" only inside "New York" where the task forbids overlap: dropped and counted, the rest kept
    "s2": [spans_json(("New York", "LOC"), ("York", "ORG"))] * 2,
    "s3": [json.dumps({"spans": [{"start": 0, "end": 999, "type": "PER"}]})] * 2,  # outside the text
    "s4": [spans_json(), *[spans_json()] * 4, spans_json(("names", "ORG"))],  # empty; 4 of 5 samples agree
    "s5": [spans_json(("Paris", "LOC"), ("Lyon", "LOC"))] * 6,
}


async def test_span_run_aligns_drops_scores_routes_and_exports(scripted: Any, tmp_path: Path) -> None:
    stub = scripted(SPAN_ANSWERS)
    task = make_task(tmp_path, stub, SPAN_TEXTS, task={"type": "spans"}, labels=TYPES)
    run_dir, summary = await start_run(task, run_dir=tmp_path / "run", show_progress=False)
    assert summary.counts == {"labeled": 4, "failed": 1} and summary.dropped == 2

    s1, s5 = SPAN_TEXTS["s1"], SPAN_TEXTS["s5"]
    assert (s1[6:9], s1[14:17], s1[21:25]) == ("Zoë", "Ada", "Köln") and (s5[8:13], s5[19:23]) == ("Paris", "Lyon")
    store = RunStore.open(run_dir)
    try:
        res = stored(store)
        assert json.loads(res["s1"]["label"]) == [
            {"start": 6, "end": 9, "type": "PER", "text": "Zoë"},
            {"start": 14, "end": 17, "type": "PER", "text": "Ada"},
            {"start": 21, "end": 25, "type": "LOC", "text": "Köln"}]
        assert res["s1"]["dropped"] == 1 and res["s5"]["dropped"] == 0
        assert json.loads(res["s1"]["distributions"])["consistency"] == {
            "span 6-9 PER 'Zoë'": 1.0, "span 14-17 PER 'Ada'": 0.4, "span 21-25 LOC 'Köln'": 1.0}
        assert res["s1"]["confidence"] == pytest.approx(0.4)
        assert json.loads(res["s5"]["label"]) == [
            {"start": 8, "end": 13, "type": "LOC", "text": "Paris"},
            {"start": 19, "end": 23, "type": "LOC", "text": "Lyon"}]
        assert res["s4"]["label"] == "[]" and res["s4"]["confidence"] == pytest.approx(0.8)
        assert json.loads(res["s4"]["distributions"]) == {"consistency": {"(empty)": 0.8}}
        assert json.loads(res["s2"]["label"]) == [{"start": 6, "end": 14, "type": "LOC", "text": "New York"}]
        assert res["s2"]["dropped"] == 1
        assert res["s3"]["reason"] == "unparseable after one re-ask: span 0-999 lies outside the text (0-12)"
    finally:
        store.close()

    route_run(run_dir)
    assert queue_reasons(run_dir) == {  # a dropped quote makes the rest of the answer doubtful too
        "s1": ("low_confidence: span 14-17 PER 'Ada' 0.40", "dropped_spans: 1 quoted span not placed"),
        "s2": ("dropped_spans: 1 quoted span not placed",), "s3": ("failed",)}

    export_run(run_dir, tmp_path / "out.parquet")
    table = pq.read_table(tmp_path / "out.parquet")
    by_id = dict(zip(table.column("id").to_pylist(), table.column("label").to_pylist(), strict=True))
    assert by_id["s1"][1] == {"start": 14, "end": 17, "type": "PER", "text": "Ada"}
    assert by_id["s4"] == [] and by_id["s3"] is None
    assert by_id["s5"][0] == {"start": 8, "end": 13, "type": "LOC", "text": "Paris"}
    assert SPAN_TEXTS["s5"][by_id["s5"][1]["start"]:by_id["s5"][1]["end"]] == "Lyon"  # code points, CRLF kept
    export_run(run_dir, tmp_path / "out.jsonl")
    rows = {r["id"]: r for r in map(json.loads, (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines())}
    assert rows["s1"]["label"][0] == {"start": 6, "end": 9, "type": "PER", "text": "Zoë"}
    export_run(run_dir, tmp_path / "out.csv")
    with (tmp_path / "out.csv").open(encoding="utf-8", newline="") as fh:
        cells = {r["id"]: r["label"] for r in csv.DictReader(fh)}
    assert json.loads(cells["s5"]) == [{"start": 8, "end": 13, "type": "LOC", "text": "Paris"},
                                       {"start": 19, "end": 23, "type": "LOC", "text": "Lyon"}]
    assert cells["s4"] == "[]"


async def test_two_members_combine_elements_and_name_the_disputed_label(scripted: Any, tmp_path: Path) -> None:
    """No samples: each element's confidence is the share of the members that produced it."""
    texts = {"e1": "id=e1 The minister at the match.", "e2": "id=e2 Chips."}
    stub = scripted({"stub-model/e1": [labels_json("sport", "politics")], "second-model/e1": [labels_json("sport")],
                     "e2": [labels_json("tech")]})
    task = make_task(tmp_path, stub, texts, task={"type": "multi_label"}, labels=TOPICS,
                     confidence={"methods": ["logprob"]}, members=[{"name": "second", "model": "second-model"}])
    run_dir, _ = await start_run(task, run_dir=tmp_path / "run", show_progress=False)
    store = RunStore.open(run_dir)
    try:
        combined = {c.item_id: c for c in store.combined_rows()}
    finally:
        store.close()
    e1 = combined["e1"]
    assert json.loads(str(e1.label)) == ["sport"]  # politics: 1 of 2 members, not more than half
    assert e1.distribution == {"label sport": 1.0} and e1.vote_share == 0.5 and e1.divergence == 0.5
    assert combined["e2"].vote_share == 1.0 and combined["e2"].divergence == 0.0
    route_run(run_dir)
    assert queue_reasons(run_dir) == {"e1": ("disagreement: members differ on label politics",)}


def test_the_request_carries_the_types_constraint_for_each_profile(tmp_path: Path) -> None:
    """json_schema on OpenAI-compatible servers, the GBNF grammar on llama-server; no logprobs asked."""
    from labeler.label.prompts import RequestBuilder
    from labeler.tasktypes.registry import for_task

    write_csv(tmp_path / "items.csv", [{"id": "a", "text": "x"}])
    for profile, want_schema in (("openai", True), ("llamacpp", False)):
        model = {"base_url": "http://127.0.0.1:9/v1", "model": "m", "profile": profile}
        task = load_config(write_task(tmp_path, labels=TYPES, model=model, task={"type": "spans"},
                                      template=MULTI_TEMPLATE), env={})
        request = RequestBuilder.for_member(task, task.members[0]).build("Ada in Köln")
        kind = for_task(task)
        assert request.response_format == (kind.response_format(TYPES) if want_schema else None)
        assert request.grammar == (None if want_schema else kind.grammar(TYPES))
        assert not request.logprobs
        assert "- LOC: texts about LOC" in request.messages[0].content


async def test_a_span_run_stopped_early_resumes_to_the_same_annotations(scripted: Any, tmp_path: Path) -> None:
    from labeler.label.pipeline import resume_run

    stub = scripted(SPAN_ANSWERS)
    task = make_task(tmp_path, stub, SPAN_TEXTS, task={"type": "spans"}, labels=TYPES)
    run_dir, first = await start_run(task, run_dir=tmp_path / "run", limit=2, show_progress=False)
    assert sum(first.counts.values()) == 2
    summary = await resume_run(run_dir, show_progress=False)
    assert summary.counts == {"labeled": 4, "failed": 1} and summary.dropped == 2
    store = RunStore.open(run_dir)
    try:
        assert json.loads(stored(store)["s5"]["label"])[1] == {"start": 19, "end": 23, "type": "LOC", "text": "Lyon"}
    finally:
        store.close()
