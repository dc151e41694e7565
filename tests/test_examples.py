"""Few-shot example selection: fixed, label-balanced, nearest neighbours (TF-IDF) and MMR, with known answers;
an item never gets its own text as an example; per-item strategies give every item its own prompt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fakes import write_task

from labeler.config import load_config
from labeler.label.examples import Selector, balanced, mmr_order
from labeler.label.prompts import RequestBuilder
from labeler.quality_config import FewShotConfig
from labeler.types import Example

LABELS = ("business", "sport", "tech")
POOL = (
    Example("shares fell on the stock market", "business"),
    Example("the bank raised interest rates", "business"),
    Example("the striker scored twice in the cup final", "sport"),
    Example("the tennis champion won the final set", "sport"),
    Example("a new phone with a faster chip", "tech"),
    Example("the software update fixed a security bug", "tech"),
)


def selector(strategy: str, k: int = 0, **kw: float) -> Selector:
    return Selector(POOL, LABELS, FewShotConfig(strategy=strategy, k=k, **kw))  # type: ignore[arg-type]


def test_fixed_takes_the_first_k_or_all() -> None:
    assert selector("fixed").select("anything") == POOL
    assert selector("fixed", 2).select("anything") == POOL[:2]


def test_balanced_takes_labels_in_turn() -> None:
    got = balanced(POOL, LABELS, 4, seed=0)
    assert [e.label for e in got] == ["business", "sport", "tech", "business"]
    assert balanced(POOL, LABELS, 4, seed=0) == got  # seeded
    assert len(balanced(POOL, LABELS, 100)) == len(POOL)


def test_knn_puts_the_most_similar_examples_last() -> None:
    got = selector("knn", 2).select("the striker scored in the final")
    assert [e.label for e in got] == ["sport", "sport"]
    assert got[-1] == POOL[2]  # the nearest, nearest the item


def test_an_item_never_gets_its_own_text_as_an_example() -> None:
    for strategy in ("fixed", "balanced", "knn", "mmr"):
        assert POOL[0] not in selector(strategy, 3).select(POOL[0].text)


def test_mmr_trades_similarity_for_diversity() -> None:
    sim_item = np.array([0.9, 0.85, 0.5])
    sim_pool = np.array([[1.0, 0.99, 0.0], [0.99, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert mmr_order(sim_item, sim_pool, 2, lam=1.0) == [0, 1]  # pure relevance: the two near-duplicates
    assert mmr_order(sim_item, sim_pool, 2, lam=0.5) == [0, 2]  # the duplicate is redundant
    assert mmr_order(np.array([0.9, -np.inf, 0.5]), sim_pool, 3, lam=1.0) == [0, 2]  # excluded stays out


def test_a_text_like_no_example_gets_the_balanced_choice() -> None:
    s = selector("knn", 3)
    assert s.select("zzz qqq") == s.fixed() == balanced(POOL, LABELS, 3)


def test_knn_prompts_differ_per_item_and_fixed_prompts_share_their_prefix(tmp_path: Path) -> None:
    template = "{% for e in examples %}{{ e.text }} => {{ e.label }}\n{% endfor %}{{ text }} =>"
    pool = [{"text": e.text, "label": e.label} for e in POOL]
    prompts = {}
    for strategy in ("fixed", "knn"):
        path = write_task(
            tmp_path / strategy,
            template=template,
            task={"examples": pool},
            sections={"fewshot": {"strategy": strategy, "k": 2}},
        )
        task = load_config(path, env={})
        b = RequestBuilder.for_member(task, task.primary)
        prompts[strategy] = [b.messages(t)[0].content for t in ("a goal in the final", "a chip in a phone")]
    fixed, knn = prompts["fixed"], prompts["knn"]
    assert fixed[0].split("\n")[:2] == fixed[1].split("\n")[:2]  # same examples: a shared prefix
    assert "striker" in knn[0] and "phone" in knn[1] and knn[0].split("\n")[0] != knn[1].split("\n")[0]


def test_the_pool_files_extend_the_task_examples(tmp_path: Path) -> None:
    (tmp_path).mkdir(exist_ok=True)
    (tmp_path / "promoted.jsonl").write_text('{"text": "a promoted correction", "label": "tech"}\n', encoding="utf-8")
    path = write_task(
        tmp_path,
        task={"examples": [{"text": "shares fell", "label": "business"}]},
        sections={"fewshot": {"strategy": "fixed", "pool": ["promoted.jsonl"]}},
    )
    task = load_config(path, env={})
    b = RequestBuilder.for_member(task, task.primary)
    assert [e.text for e in b.selector.pool] == ["shares fell", "a promoted correction"]
