"""K items a request on the real embedded model (llama-server with Gemma-3-270M): the bundled multi-label task
entity_kinds at K = 4 over eight of its sentences. The grammar built from the task type's own writes every id;
each item's part parses as a label set within the task's bounds, and is cached under its K-item identity.
Skipped when `labeler setup` has not built the server and the model."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from fakes import write_csv

from labeler.config import ConfidenceConfig, load_config
from labeler.inputs import read_rows
from labeler.label.local import model_file, server_binary
from labeler.label.multi_elements import multi_builder
from labeler.label.pipeline import start_run
from labeler.store import Cache, RunStore

pytestmark = [pytest.mark.local_model, pytest.mark.integration]

if os.environ.get("LABELER_SKIP_LOCAL") == "1":
    pytest.skip("LABELER_SKIP_LOCAL=1", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
# Three of prompts/entity_kinds/fewshot.j2's examples as one K-item block (without examples the base model
# names one kind four times over, which the type's parse refuses and the runner asks again alone).
EXAMPLES = [
    ("Moyer retired 11 straight batters between the third and seventh innings.", ["person"]),
    ("A Turkish airliner from Istanbul to Vienna landed in emergency at Sofia airport.", ["location", "misc"]),
    ("But he will be ineligible for the rest of Aberdeen's UEFA Cup campaign.", ["organization", "misc"]),
]


def multi_template() -> str:
    lines = "\n".join(json.dumps({"id": f"e{n}", "text": t}) for n, (t, _) in enumerate(EXAMPLES, 1))
    answers = json.dumps({"answers": [{"id": f"e{n}", "labels": labs} for n, (_, labs) in enumerate(EXAMPLES, 1)]})
    items = "{% for it in items %}\n{{ it.line }}\n{% endfor %}"
    return f"Sentences:\n{lines}\nKinds: {answers}\n\nSentences:\n{items}\nKinds:"


@pytest.fixture(autouse=True)
def _needs_setup() -> None:
    if server_binary() is None or model_file("gemma3-270m") is None:
        pytest.skip("the embedded model is not set up: run `labeler setup`")


def test_entity_kinds_four_items_a_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABELER_CACHE", str(tmp_path / "cache.sqlite"))
    base = load_config(ROOT / "prompts" / "entity_kinds" / "task.toml")
    assert base.input_path is not None
    rows = list(read_rows(base.input_path, id_column="id", text_column="text", gold_column="label"))[:8]
    write_csv(tmp_path / "items.csv", [{"id": r.item.id, "text": r.item.text, "label": r.gold} for r in rows])
    member = base.primary
    member = replace(member, endpoint=replace(member.endpoint, items_per_request=4))
    (tmp_path / "multi.j2").write_text(multi_template(), encoding="utf-8")
    task = replace(base, members=(member,), input_path=tmp_path / "items.csv", confidence=ConfidenceConfig(methods=()),
                   multi_template=tmp_path / "multi.j2")
    run_dir, summary = asyncio.run(start_run(task, run_dir=tmp_path / "run", show_progress=False))
    assert summary.counts == {"labeled": 8}
    store = RunStore.open(run_dir)
    try:
        got = {r["item_id"]: (r["text"], r["label"]) for r in store.iter_results()}
    finally:
        store.close()
    print("entity_kinds K=4:", [(t[:30], lab) for t, lab in got.values()])  # what it said, with -s
    for _, label in got.values():
        names = json.loads(label)
        assert 1 <= len(names) <= 4 and set(names) <= set(task.label_names) and len(set(names)) == len(names)
    multi = multi_builder(task, task.primary)
    assert multi is not None and multi.k == 4
    cache = Cache(tmp_path / "cache.sqlite")
    try:
        from_k = cache.get_many([multi.identity(t) for t, _ in got.values()])
    finally:
        cache.close()
    assert len(from_k) >= 4  # at least one whole request's items were read from a K-item answer
