"""The run store and the response cache: ingest, duplicate ids, pending work in input order across
batch boundaries, idempotent results, and a lossless cache round trip."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from fakes import completion, tok

from labeler.errors import InputError, RunStoreError
from labeler.inputs import Row
from labeler.store import Cache, RunStore
from labeler.store.run import MIGRATIONS
from labeler.types import Choice, Completion, Item, ItemResult


def _rows(ids: list[str], *, skip: set[str] = frozenset(), gold: dict[str, str] | None = None) -> list[Row]:
    return [
        Row(
            Item(id=i, text="" if i in skip else f"text of {i}", row=n, flags=("invalid-utf8",) if i == "bad" else ()),
            gold=(gold or {}).get(i),
            skip="empty or whitespace-only text" if i in skip else None,
        )
        for n, i in enumerate(ids, 1)
    ]


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    s = RunStore.create(tmp_path / "run", {"run_id": "run", "members": [{"name": "a"}]})
    yield s
    s.close()


def test_create_writes_the_manifest_first_and_refuses_to_overwrite(tmp_path: Path, store: RunStore) -> None:
    assert json.loads((store.run_dir / "manifest.json").read_text())["run_id"] == "run"
    assert store.manifest["members"] == [{"name": "a"}]
    with pytest.raises(RunStoreError, match="labeler resume"):
        RunStore.create(store.run_dir, {})
    with pytest.raises(RunStoreError, match="not a run directory"):
        RunStore.open(tmp_path / "elsewhere")


def test_ingest_counts_and_stores_the_corpus(store: RunStore) -> None:
    ids = ["x1", "bad", "x3", "x4", "x5"]
    counts = store.ingest(_rows(ids, skip={"x3"}, gold={"x1": "sport"}), members=["a", "b"], batch=2)
    assert counts == {"items": 5, "skipped": 1, "flagged": 1}
    assert store.count_items() == 5
    rows = store.conn.execute("SELECT ord, id, text, flags, gold, skip FROM items ORDER BY ord").fetchall()
    assert [tuple(r) for r in rows][:3] == [
        (1, "x1", "text of x1", "", "sport", None),
        (2, "bad", "text of bad", "invalid-utf8", None, None),
        (3, "x3", "", "", None, "empty or whitespace-only text"),
    ]
    # a skipped row gets a 'skipped' result for every member, with the reason
    skipped = store.conn.execute("SELECT item_id, member, status, reason FROM results ORDER BY member").fetchall()
    assert [tuple(r) for r in skipped] == [
        ("x3", "a", "skipped", "empty or whitespace-only text"),
        ("x3", "b", "skipped", "empty or whitespace-only text"),
    ]
    assert store.status_counts() == {"skipped": 2}
    with pytest.raises(RunStoreError, match="already holds its corpus"):
        store.ingest(_rows(["y"]), members=["a"])


@pytest.mark.parametrize(
    ("ids", "batch", "dup", "rows"),
    [
        (["a", "b", "a"], 10, "a", (1, 3)),  # inside one batch
        (["a", "b", "c", "d", "b"], 2, "b", (2, 5)),  # across batches
        (["a", "b", "c", "d", "c"], 2, "c", (3, 5)),  # the first of the clashing batch is new
        (["a", "b", "c", "c"], 3, "c", (3, 4)),  # the repeat opens the next batch
    ],
)
def test_duplicate_id_names_both_rows_and_leaves_no_half_corpus(
    store: RunStore, ids: list[str], batch: int, dup: str, rows: tuple[int, int]
) -> None:
    with pytest.raises(InputError) as err:
        store.ingest(_rows(ids), members=["a"], batch=batch)
    assert f"duplicate id {dup!r} (rows {rows[0]} and {rows[1]})" in str(err.value)
    assert 'input.id_column = ""' in str(err.value)
    assert store.count_items() == 0 and store.get_meta("ingested") is None  # rolled back


def _result(item_id: str, member: str = "a", status: str = "labeled", **kw: object) -> ItemResult:
    kw.setdefault("label", "sport")
    return ItemResult(item_id=item_id, member=member, status=status, **kw)  # type: ignore[arg-type]


def test_pending_excludes_done_and_keeps_input_order_across_batches(store: RunStore) -> None:
    ids = [f"i{n:02d}" for n in range(1, 12)]
    store.ingest(_rows(ids, skip={"i05"}), members=["a", "b"], batch=4)
    store.put_result(_result("i02"))
    store.put_result(_result("i07", status="failed", label=None))
    store.put_result(_result("i03", member="b"))
    want_a = [i for i in ids if i not in {"i02", "i05", "i07"}]
    for batch in (1, 2, 3, 1000):
        got = list(store.pending("a", batch=batch))
        assert [it.id for it in got] == want_a
    assert [it.row for it in store.pending("a", batch=2)][:3] == [1, 3, 4]
    # failed items come back when asked to retry them; skipped ones never do
    assert [it.id for it in store.pending("a", retry_failed=True, batch=3)] == sorted([*want_a, "i07"])
    assert "i03" not in [it.id for it in store.pending("b", batch=2)]
    assert "i02" in [it.id for it in store.pending("b", batch=2)]


def test_pending_carries_the_items_flags(store: RunStore) -> None:
    store.ingest(_rows(["ok", "bad"]), members=["a"])
    store.set_flags("ok", ["truncated", "truncated"])
    assert {it.id: it.flags for it in store.pending("a")} == {"ok": ("truncated",), "bad": ("invalid-utf8",)}


def test_put_result_is_idempotent_per_item_and_member(store: RunStore) -> None:
    store.ingest(_rows(["x", "y"]), members=["a", "b"])
    store.put_result(_result("x", status="failed", label=None, reason="gave up", raw="???"))
    store.put_result(
        _result("x", confidence=0.9, distributions={"logprob": {"sport": 0.9, "tech": 0.1}}, cost=0.5, cached=True)
    )
    store.put_result(_result("x", member="b"))
    rows = store.conn.execute("SELECT * FROM results WHERE item_id = 'x' ORDER BY member").fetchall()
    assert len(rows) == 2
    a = rows[0]
    assert (a["member"], a["status"], a["label"], a["confidence"], a["reason"], a["raw"]) == (
        "a", "labeled", "sport", 0.9, None, None,
    )  # fmt: skip
    assert json.loads(a["distributions"]) == {"logprob": {"sport": 0.9, "tech": 0.1}}
    assert a["cached"] == 1 and a["cost"] == 0.5
    assert store.status_counts() == {"labeled": 2}
    assert store.status_counts("b") == {"labeled": 1}
    assert store.totals()["cost"] == 0.5 and store.totals()["cached"] == 1


def test_iter_results_joins_items_in_input_order(store: RunStore) -> None:
    store.ingest(_rows(["p", "q", "r"], gold={"q": "tech"}), members=["a", "b"])
    for item_id in ("r", "p", "q"):
        for member in ("b", "a"):
            store.put_result(_result(item_id, member=member))
    got = [(r["item_id"], r["member"], r["gold"]) for r in store.iter_results(batch=2)]
    assert got == [("p", "a", None), ("p", "b", None), ("q", "a", "tech"), ("q", "b", "tech"), ("r", "a", None),
                   ("r", "b", None)]  # fmt: skip
    assert [r["member"] for r in store.iter_results(member="b")] == ["b", "b", "b"]


def test_results_survive_reopening(tmp_path: Path) -> None:
    s = RunStore.create(tmp_path / "r", {"members": []})
    s.ingest(_rows(["x"]), members=["a"])
    s.put_result(_result("x"))
    s.close()
    again = RunStore.open(tmp_path / "r")
    assert again.status_counts() == {"labeled": 1}
    assert again.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    again.close()
    # committed as written: another connection sees the row (no open transaction holds it back)
    raw = sqlite3.connect(tmp_path / "r" / "run.sqlite")
    assert raw.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 1
    raw.close()


def test_cache_roundtrip_keeps_logprobs_and_usage(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "deep" / "cache.sqlite")
    original = completion(
        ['{"label": "sport"}', "tech"],
        input_tokens=321,
        output_tokens=9,
        logprobs=[tok("sport", 0.75, {"sport": 0.75, "tech": 0.25}), tok("}", 1.0)],
        model="served",
    )
    original = Completion(choices=original.choices, input_tokens=321, output_tokens=9, model="served",
                          request_id="req_1")  # fmt: skip
    assert cache.get("k") is None
    cache.put("k", original)
    assert cache.get("k") == original
    plain = Completion(choices=(Choice("x"),))
    cache.put("k", plain)  # the same key replaces
    assert cache.get("k") == plain
    cache.close()
    reopened = Cache(tmp_path / "deep" / "cache.sqlite")
    assert reopened.get("k") == plain
    reopened.close()


def test_spend_is_summed_over_attempts(store: RunStore) -> None:
    """A failed item retried by a resume keeps what its first attempt cost: spend only ever goes up."""
    store.ingest(_rows(["x", "y"]), members=["a"])
    store.put_result(
        _result("x", status="failed", label=None, input_tokens=100, output_tokens=7, cost=0.01, attempts=3)
    )
    store.flush()
    first = store.totals()
    store.put_result(_result("x", input_tokens=120, output_tokens=2, cost=0.02, attempts=1))
    store.put_result(_result("y", input_tokens=50, output_tokens=1, cost=0.005, attempts=1))
    store.flush()
    totals = store.totals()
    assert (first["input_tokens"], first["cost"]) == (100, pytest.approx(0.01))
    assert (totals["input_tokens"], totals["output_tokens"]) == (270, 10)
    assert totals["cost"] == pytest.approx(0.035)
    row = next(r for r in store.item_rows() if r.id == "x").results["a"]
    assert (row.status, row.label, row.attempts, row.cost) == ("labeled", "sport", 4, pytest.approx(0.03))
