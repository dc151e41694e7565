"""Labeling with a scripted in-process backend: every stored label, failure, retry, cache hit,
confidence and cost is known before the run."""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from fakes import (
    FakeBackend,
    Reply,
    completion,
    in_order,
    is_reask,
    item_number,
    json_answer,
    open_run,
    tok,
    user_text,
    write_csv,
    write_task,
)

from labeler.config import TaskConfig, load_config
from labeler.errors import BackendError, FatalError, RetryableError
from labeler.label import pipeline, tokens
from labeler.label.runner import label_pending
from labeler.store import Cache, RunStore
from labeler.types import Request

LABELS = ("business", "sport", "tech")
FAST_RETRY = {"max_attempts": 3, "initial_wait": 0.0, "max_wait": 0.0}


@pytest.fixture(autouse=True)
def _no_redirects(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_BASE_URL", "LABELER_CACHE"):
        monkeypatch.delenv(var, raising=False)


def make_task(
    root: Path,
    gold: Sequence[str],
    *,
    texts: Mapping[int, str] | None = None,
    model: Mapping[str, Any] | None = None,
    sections: Mapping[str, Mapping[str, Any]] | None = None,
    members: Sequence[Mapping[str, Any]] = (),
) -> TaskConfig:
    """A task over a corpus whose item n reads `item n: ...` and has gold label gold[n - 1]."""
    rows = [
        {"id": f"d{n:03d}", "text": (texts or {}).get(n, f"item {n}: a short text"), "gold": g}
        for n, g in enumerate(gold, 1)
    ]
    write_csv(root / "items.csv", rows)
    sections = {"retry": FAST_RETRY, **(sections or {})}
    sections["input"] = {"gold_column": "gold", **sections.get("input", {})}
    model = {"base_url": "http://127.0.0.1:9/v1", "model": "test-model", **(model or {})}
    return load_config(write_task(root, model=model, sections=sections, members=members), env={})


async def run(
    task: TaskConfig, root: Path, backends: Mapping[str, FakeBackend], *, run_dir: str = "run", **kw: Any
) -> RunStore:
    store = open_run(task, root / run_dir)
    cache = Cache(root / "cache.sqlite")
    try:
        await label_pending(task, store, cache, backends, **kw)
    finally:
        cache.close()
    return store


def results(store: RunStore, member: str = "default") -> dict[str, Any]:
    return {r["item_id"]: r for r in store.iter_results(member=member)}


def json_logprobs(label: str, p: float, other: str) -> list:
    """Token logprobs for {"label": "<label>"} where the label's first token has probability p."""
    return [tok('{"label": "', 1.0), tok(label, p, {label: p, other: 1 - p}), tok('"}', 1.0)]


async def test_synthetic_corpus_with_a_known_error_rate(tmp_path: Path) -> None:
    rng = random.Random(7)
    n_items = 120
    gold = [rng.choice(LABELS) for _ in range(n_items)]
    wrong = set(rng.sample(range(1, n_items + 1), 18))  # the fake model errs on exactly these items
    said = {n: LABELS[(LABELS.index(g) + 1) % 3] if n in wrong else g for n, g in enumerate(gold, 1)}

    def model(request: Request) -> Reply:
        label = said[item_number(request)]
        other = next(lab for lab in LABELS if lab != label)
        return completion(json_answer(label), logprobs=json_logprobs(label, 0.8, other))

    task = make_task(tmp_path, gold)
    fake = FakeBackend(model)
    store = await run(task, tmp_path, {"default": fake})
    got = results(store)
    assert fake.calls == n_items
    assert {item_id: r["label"] for item_id, r in got.items()} == {f"d{n:03d}": said[n] for n in said}
    assert all(r["status"] == "labeled" and r["confidence"] == pytest.approx(0.8) for r in got.values())
    accuracy = sum(r["label"] == r["gold"] for r in got.values()) / n_items
    assert accuracy == pytest.approx(1 - 18 / n_items)
    assert store.status_counts() == {"labeled": n_items}
    first = fake.requests[0]
    assert (first.model, first.n, first.temperature, first.logprobs) == ("test-model", 1, 0.0, True)
    assert first.response_format is not None
    assert sorted(item_number(r) for r in fake.requests) == list(range(1, n_items + 1))  # each item once
    store.close()


async def test_logprob_distribution_is_stored(tmp_path: Path) -> None:
    task = make_task(tmp_path, ["sport"])
    fake = FakeBackend(lambda r: completion(json_answer("sport"), logprobs=json_logprobs("sport", 0.6, "tech")))
    store = await run(task, tmp_path, {"default": fake})
    [r] = results(store).values()
    assert json.loads(r["distributions"]) == {"logprob": pytest.approx({"business": 0.0, "sport": 0.6, "tech": 0.4})}
    assert r["confidence"] == pytest.approx(0.6)
    store.close()


async def test_unparseable_answer_fixed_on_the_reask_is_labeled(tmp_path: Path) -> None:
    task = make_task(tmp_path, ["business", "tech"])

    def model(request: Request) -> Reply:
        return json_answer("tech") if is_reask(request) else "Hmm, hard to say."

    fake = FakeBackend(model)
    store = await run(task, tmp_path, {"default": fake})
    got = results(store)
    assert [r["status"] for r in got.values()] == ["labeled", "labeled"]
    assert [r["label"] for r in got.values()] == ["tech", "tech"]
    assert fake.calls == 4  # one re-ask per item
    reask = next(r for r in fake.requests if is_reask(r))
    assert reask.messages[-2].role == "assistant" and reask.messages[-2].content == "Hmm, hard to say."
    assert "business, sport, tech" in reask.messages[-1].content
    assert all(r["input_tokens"] == 200 and r["output_tokens"] == 10 for r in got.values())  # both calls paid
    store.close()


async def test_unparseable_twice_is_failed_with_raw_and_reason(tmp_path: Path) -> None:
    task = make_task(tmp_path, ["business"])
    fake = FakeBackend(in_order("no idea", '{"label": "finance"}'))
    store = await run(task, tmp_path, {"default": fake})
    [r] = results(store).values()
    assert (r["status"], r["label"], r["raw"]) == ("failed", None, '{"label": "finance"}')
    assert r["reason"] == "unparseable after one re-ask: label 'finance' is not in the label set"
    assert fake.calls == 2
    store.close()


async def test_retryable_errors_exhausted_fail_the_item_with_the_reason(tmp_path: Path) -> None:
    task = make_task(tmp_path, ["sport", "tech"])
    fake = FakeBackend(lambda r: RetryableError("server answered 503", status=503))
    store = await run(task, tmp_path, {"default": fake})
    got = results(store)
    assert [r["status"] for r in got.values()] == ["failed", "failed"]
    assert all(r["reason"] == "gave up after 3 attempts: server answered 503" for r in got.values())
    assert fake.calls == 2 * 3
    store.close()


async def test_transient_errors_then_success_label_the_item(tmp_path: Path) -> None:
    task = make_task(tmp_path, ["sport"])
    fake = FakeBackend(in_order(RetryableError("429", status=429, retry_after=0.0), RetryableError("t"), "sport"))
    store = await run(task, tmp_path, {"default": fake})
    [r] = results(store).values()
    assert (r["status"], r["label"], r["attempts"]) == ("labeled", "sport", 3)
    store.close()


async def test_a_server_that_keeps_failing_trips_the_breaker(tmp_path: Path) -> None:
    task = make_task(tmp_path, ["sport"] * 6, model={"concurrency": 1})
    fake = FakeBackend(lambda r: RetryableError("server answered 502", status=502))
    store = open_run(task, tmp_path / "run")
    cache = Cache(tmp_path / "cache.sqlite")
    with pytest.raises(BackendError, match="failed 3 items in a row") as err:
        await label_pending(task, store, cache, {"default": fake}, breaker=3)
    assert "labeler resume" in str(err.value)
    assert store.status_counts() == {"failed": 3}  # what was stored stays stored
    cache.close()
    store.close()


async def test_401_aborts_the_run_and_leaves_items_pending(tmp_path: Path) -> None:
    task = make_task(tmp_path, ["sport", "tech", "business"], model={"concurrency": 1})
    fake = FakeBackend(lambda r: FatalError("server answered 401: bad key; check the API key", status=401))
    store = open_run(task, tmp_path / "run")
    cache = Cache(tmp_path / "cache.sqlite")
    with pytest.raises(FatalError, match="401"):
        await label_pending(task, store, cache, {"default": fake})
    assert fake.calls == 1  # not retried, and no further item tried
    assert store.status_counts() == {}
    assert len(list(store.pending("default"))) == 3
    cache.close()
    store.close()


async def test_a_400_fails_one_item_and_the_run_goes_on(tmp_path: Path) -> None:
    task = make_task(tmp_path, ["sport", "tech"])

    def model(request: Request) -> Reply:
        if item_number(request) == 1:
            return FatalError("server answered 400: context too long; shorten", status=400)
        return "tech"

    store = await run(task, tmp_path, {"default": FakeBackend(model)})
    got = results(store)
    assert got["d001"]["status"] == "failed" and "server answered 400" in got["d001"]["reason"]
    assert got["d002"]["label"] == "tech"
    store.close()


async def test_a_second_run_is_answered_from_the_cache(tmp_path: Path) -> None:
    gold = ["business", "sport", "tech", "sport"]
    task = make_task(tmp_path, gold)
    first = FakeBackend(lambda r: json_answer(gold[item_number(r) - 1]))
    store1 = await run(task, tmp_path, {"default": first}, run_dir="run1")
    assert first.calls == 4
    second = FakeBackend(lambda r: AssertionError("must not be asked"))
    store2 = await run(task, tmp_path, {"default": second}, run_dir="run2")
    assert second.calls == 0
    got = results(store2)
    assert [r["label"] for r in got.values()] == gold
    assert all(r["cached"] == 1 and r["cost"] == 0 and r["attempts"] == 0 for r in got.values())
    assert all(r["cached"] == 0 for r in results(store1).values())
    assert store2.totals()["cached"] == 4
    # and labeling the same store again has nothing left to do
    cache = Cache(tmp_path / "cache.sqlite")
    await label_pending(task, store2, cache, {"default": second})
    assert second.calls == 0
    cache.close()
    store1.close()
    store2.close()


async def test_failed_answers_are_not_cached(tmp_path: Path) -> None:
    task = make_task(tmp_path, ["sport"])
    await run(task, tmp_path, {"default": FakeBackend(lambda r: "???")}, run_dir="run1")
    again = FakeBackend(lambda r: "sport")
    store = await run(task, tmp_path, {"default": again}, run_dir="run2")
    assert again.calls == 1 and results(store)["d001"]["label"] == "sport"
    store.close()


async def test_an_over_long_text_is_truncated_and_flagged(tmp_path: Path) -> None:
    long_text = "item 1: " + " ".join(f"word{i}" for i in range(300))
    task = make_task(tmp_path, ["tech", "sport"], texts={1: long_text}, sections={"input": {"max_input_tokens": 16}})
    fake = FakeBackend(lambda r: "tech")
    store = await run(task, tmp_path, {"default": fake})
    got = results(store)
    assert got["d001"]["reason"] == "input truncated to the token budget"
    assert got["d001"]["status"] == "labeled"
    assert got["d001"]["flags"] == "truncated"
    assert got["d002"]["reason"] is None and got["d002"]["flags"] == ""
    sent = {item_number(r): user_text(r) for r in fake.requests}
    enc = tokens.get_encoder("test-model")
    assert enc.name == "cl100k_base"
    assert len(enc.encode_ordinary(sent[1])) <= 16 < len(enc.encode_ordinary(long_text))
    assert long_text.startswith(sent[1])
    store.close()


async def test_consistency_with_n_samples_gives_vote_shares(tmp_path: Path) -> None:
    task = make_task(tmp_path, ["sport"], sections={"confidence": {"methods": ["consistency"], "samples": 5}})

    def model(request: Request) -> Reply:
        if request.n == 5:
            assert request.temperature == 0.8
            return ["sport", json_answer("sport"), "Sport.", "tech", "no idea"]  # 4 parse: 3 sport, 1 tech
        return json_answer("sport")

    fake = FakeBackend(model)
    store = await run(task, tmp_path, {"default": fake})
    [r] = results(store).values()
    assert json.loads(r["distributions"]) == {"consistency": {"business": 0.0, "sport": 0.75, "tech": 0.25}}
    assert r["confidence"] == 0.75
    assert fake.calls == 2
    store.close()


async def test_consistency_without_n_sends_one_request_per_sample(tmp_path: Path) -> None:
    task = make_task(
        tmp_path,
        ["tech"],
        model={"profile": "plain"},
        sections={"confidence": {"methods": ["logprob", "consistency"], "samples": 5}},
    )

    def model(request: Request) -> Reply:
        assert request.n == 1
        return "sport" if request.seed in (1, 2) else "tech"

    fake = FakeBackend(model)
    store = await run(task, tmp_path, {"default": fake})
    [r] = results(store).values()
    # the plain profile has no logprobs, so the confidence comes from the votes
    assert json.loads(r["distributions"]) == {"consistency": {"business": 0.0, "sport": 0.4, "tech": 0.6}}
    assert (r["label"], r["confidence"]) == ("tech", 0.6)
    assert sorted((q.seed or 0, q.temperature) for q in fake.requests) == [
        (0, 0.0), (1, 0.8), (2, 0.8), (3, 0.8), (4, 0.8), (5, 0.8),
    ]  # fmt: skip
    store.close()


async def test_verbalized_confidence_lands_in_the_distributions(tmp_path: Path) -> None:
    task = make_task(tmp_path, ["tech", "sport"], sections={"confidence": {"methods": ["verbalized"]}})
    fake = FakeBackend(
        lambda r: json_answer("tech", 0.7) if item_number(r) == 1 else '{"label": "sport", "confidence": "80"}'
    )
    store = await run(task, tmp_path, {"default": fake})
    got = results(store)
    assert json.loads(got["d001"]["distributions"]) == {
        "verbalized": pytest.approx({"business": 0.15, "sport": 0.15, "tech": 0.7})
    }
    assert got["d001"]["confidence"] == pytest.approx(0.7)
    assert got["d002"]["confidence"] == pytest.approx(0.8)
    assert "confidence" in fake.requests[0].response_format["json_schema"]["schema"]["required"]  # type: ignore[index]
    store.close()


async def test_cost_is_usage_times_prices(tmp_path: Path) -> None:
    task = make_task(
        tmp_path, ["sport", "tech", "sport"], model={"price_input_per_1m": 3.0, "price_output_per_1m": 15.0}
    )

    def model(request: Request) -> Reply:
        n = item_number(request)
        if n == 3 and not is_reask(request):
            return completion("dunno", input_tokens=2000, output_tokens=4)
        return completion(json_answer("sport"), input_tokens=1000 * n, output_tokens=20)

    store = await run(task, tmp_path, {"default": FakeBackend(model)})
    got = results(store)
    assert got["d001"]["cost"] == pytest.approx((1000 * 3.0 + 20 * 15.0) / 1e6)
    assert got["d002"]["cost"] == pytest.approx((2000 * 3.0 + 20 * 15.0) / 1e6)
    # the re-ask is paid too
    assert got["d003"]["cost"] == pytest.approx((2000 * 3.0 + 4 * 15.0 + 3000 * 3.0 + 20 * 15.0) / 1e6)
    assert (got["d003"]["input_tokens"], got["d003"]["output_tokens"]) == (5000, 24)
    assert store.totals()["cost"] == pytest.approx(sum(r["cost"] for r in got.values()))
    store.close()


async def test_every_member_labels_every_item_with_its_own_model(tmp_path: Path) -> None:
    task = make_task(tmp_path, ["sport", "tech"], members=[{"name": "big", "model": "m-big"}])
    small = FakeBackend(lambda r: "sport")
    big = FakeBackend(lambda r: "tech")
    store = await run(task, tmp_path, {"default": small, "big": big})
    assert [r["label"] for r in results(store, "default").values()] == ["sport", "sport"]
    assert [r["label"] for r in results(store, "big").values()] == ["tech", "tech"]
    assert {r.model for r in small.requests} == {"test-model"} and {r.model for r in big.requests} == {"m-big"}
    store.close()


async def test_limit_labels_a_prefix_and_leaves_the_rest_pending(tmp_path: Path) -> None:
    task = make_task(tmp_path, ["sport"] * 5, model={"concurrency": 1})
    store = await run(task, tmp_path, {"default": FakeBackend(lambda r: "sport")}, limit=2)
    assert list(results(store)) == ["d001", "d002"]
    assert [it.id for it in store.pending("default")] == ["d003", "d004", "d005"]
    store.close()


# --- through labeler.label.pipeline, with the fake backend in place of open_backends -------------------
def _patch_backends(monkeypatch: pytest.MonkeyPatch, make: Callable[[str], FakeBackend]) -> list[FakeBackend]:
    made: list[FakeBackend] = []

    @contextlib.asynccontextmanager
    async def fake_open_backends(task: TaskConfig) -> AsyncIterator[dict[str, FakeBackend]]:
        backends = {m.name: make(m.name) for m in task.members}
        made.extend(backends.values())
        yield backends

    monkeypatch.setattr(pipeline, "open_backends", fake_open_backends)
    return made


async def test_start_then_resume_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gold = ["business", "sport", "tech", "tech", "sport"]
    task = make_task(tmp_path, gold, model={"concurrency": 1})
    made = _patch_backends(monkeypatch, lambda name: FakeBackend(lambda r: gold[item_number(r) - 1]))
    run_dir, summary = await pipeline.start_run(task, run_dir=tmp_path / "runs" / "r1", limit=2, show_progress=False)
    assert summary.counts == {"labeled": 2}
    opened = RunStore.open(run_dir)
    manifest = opened.manifest
    opened.close()
    assert manifest["labels"] == list(LABELS) and manifest["members"][0]["endpoint"]["model"] == "test-model"
    assert manifest["members"][0]["params"]["temperature"] == 0.0
    resumed = await pipeline.resume_run(run_dir, show_progress=False)
    assert resumed.counts == {"labeled": 5}
    assert sum(b.calls for b in made) == 5  # never paid twice
    assert (tmp_path / "runs" / "cache.sqlite").exists()
    store = RunStore.open(run_dir)
    assert [r["label"] for r in results(store).values()] == gold
    store.close()


async def test_a_server_that_rejects_every_request_stops_the_run(tmp_path: Path) -> None:
    task = make_task(tmp_path, ["sport"] * 8, model={"concurrency": 1})
    fake = FakeBackend(lambda r: FatalError("server answered 400: response_format is not supported", status=400))
    store = open_run(task, tmp_path / "run")
    cache = Cache(tmp_path / "cache.sqlite")
    with pytest.raises(FatalError) as err:
        await label_pending(task, store, cache, {"default": fake}, breaker=3)
    message = str(err.value)
    assert "rejected 3 items in a row" in message and "response_format is not supported" in message
    assert 'set model.profile = "plain" in task.toml' in message and "labeler resume" in message
    assert "\n" not in message and err.value.status == 400
    assert fake.calls == 3 and store.status_counts() == {"failed": 3}
    cache.close()
    store.close()


async def test_item_specific_rejections_with_different_statuses_do_not_stop_the_run(tmp_path: Path) -> None:
    task = make_task(tmp_path, ["sport"] * 8, model={"concurrency": 1})

    def model(request: Request) -> Reply:
        n = item_number(request)
        if n == 5:
            return "sport"
        status = 400 if n % 2 else 422
        return FatalError(f"server answered {status}: item {n} is odd", status=status)

    store = await run(task, tmp_path, {"default": FakeBackend(model)}, breaker=2)
    assert store.status_counts() == {"failed": 7, "labeled": 1}
    store.close()


async def test_an_undefined_variable_one_item_reaches_names_the_item(tmp_path: Path) -> None:
    from labeler.errors import TemplateError

    template = "[[user]]\n{% if 'secret' in text %}{{ secret_hint }}{% endif %}{{ text }}\n"
    rows = [{"id": "a1", "text": "item 1: plain"}, {"id": "b2", "text": "item 2: a secret one"}]
    write_csv(tmp_path / "items.csv", rows)
    task = load_config(write_task(tmp_path, template=template, sections={"retry": FAST_RETRY}), env={})
    store = open_run(task, tmp_path / "run")
    cache = Cache(tmp_path / "cache.sqlite")
    fake = FakeBackend(lambda r: json_answer("sport"))
    with pytest.raises(TemplateError) as err:
        await label_pending(task, store, cache, {"default": fake})
    assert "item 'b2' (row 2)" in str(err.value) and "'secret_hint' is undefined" in str(err.value)
    assert "\n" not in str(err.value)
    cache.close()
    store.close()


def test_a_slow_rate_is_not_shown_as_zero() -> None:
    from labeler.label.progress import per_second

    assert [per_second(r) for r in (0.0, 0.022, 0.0049, 0.1, 1.234, 17.0)] == ["0.0", "0.022", "0.0049", "0.1",
                                                                             "1.2", "17.0"]
