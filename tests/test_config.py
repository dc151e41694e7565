"""Task config: a valid file loads; every unknown key or bad value is a ConfigError naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import BASE_URL, write_task

from labeler.config import LOCAL, Endpoint, load_config
from labeler.errors import ConfigError


def test_valid_config_loads_with_defaults_and_resolved_paths(tmp_path: Path) -> None:
    path = write_task(
        tmp_path,
        model={"base_url": BASE_URL, "model": "gpt-4o-mini", "concurrency": 4, "price_input_per_1m": 2},
        sections={"confidence": {"methods": ["logprob", "consistency"], "samples": 3}},
    )
    task = load_config(path, env={})
    assert task.name == "news"
    assert task.label_names == ("business", "sport", "tech")
    assert task.labels[0].description == "texts about business"
    assert task.input_path == tmp_path / "items.csv"
    assert (task.id_column, task.text_column, task.gold_column) == ("id", "text", None)
    assert task.max_input_tokens == 1024
    [member] = task.members
    assert member.name == "default" and member is task.primary
    assert member.template == tmp_path / "prompt.j2"
    ep = member.endpoint
    assert (ep.base_url, ep.model, ep.concurrency) == (BASE_URL, "gpt-4o-mini", 4)
    assert ep.price_input_per_1m == 2.0 and isinstance(ep.price_input_per_1m, float)  # int promoted
    assert ep.max_output_tokens == Endpoint().max_output_tokens
    assert task.confidence.methods == ("logprob", "consistency") and task.confidence.samples == 3
    assert task.raw["model"]["concurrency"] == 4


def test_the_default_endpoint_is_the_embedded_local_model(tmp_path: Path) -> None:
    path = write_task(tmp_path, model={})
    assert load_config(path, env={}).primary.endpoint.base_url == LOCAL


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"model": {"base_url": BASE_URL, "concurrenci": 2}}, "model.concurrenci"),
        ({"model": {"base_url": BASE_URL, "concurrency": "x"}}, "model.concurrency"),
        ({"model": {"base_url": BASE_URL, "concurrency": 0}}, "model.concurrency"),
        ({"model": {"base_url": BASE_URL, "concurrency": 2.5}}, "model.concurrency"),
        ({"model": {"base_url": BASE_URL, "concurrency": True}}, "model.concurrency"),
        ({"model": {"base_url": BASE_URL, "temperature": "hot"}}, "model.temperature"),
        ({"model": {"base_url": BASE_URL, "timeout": -1}}, "model.timeout"),
        ({"model": {"base_url": BASE_URL, "max_output_tokens": 0}}, "model.max_output_tokens"),
        ({"model": {"base_url": BASE_URL, "seed": "x"}}, "model.seed"),
        ({"model": {"base_url": BASE_URL, "api_key": "sk-secret"}}, "model.api_key"),  # keys never in the file
        ({"task": {"nmae": "x"}}, "task.nmae"),
        ({"sections": {"input": {"text_col": "body"}}}, "input.text_col"),
        ({"sections": {"input": {"max_input_tokens": 8}}}, "input.max_input_tokens"),
        ({"sections": {"retry": {"max_attempts": "6"}}}, "retry.max_attempts"),
        ({"sections": {"confidence": {"methods": ["logprobs"]}}}, "confidence.methods"),
        ({"sections": {"confidence": {"methods": "logprob"}}}, "confidence.methods"),
        ({"sections": {"confidence": {"combine": "mean"}}}, "confidence.combine"),
        ({"sections": {"routing": {"audit_fraction": 0.9}}}, "routing.audit_fraction"),
        ({"sections": {"review": {"price_per_label": "cheap"}}}, "review.price_per_label"),
        ({"sections": {"extra": {"x": 1}}}, "unknown key extra"),
        ({"members": [{"name": "big", "temprature": 0.5}]}, "members[0].temprature"),
        ({"members": [{"name": "default"}]}, "members"),
        ({"labels": ["only"]}, "[[labels]]"),
        ({"labels": ["a", "A"]}, "labels"),
        ({"task": {"examples": [{"text": "x", "label": "weather"}]}}, "task.examples[0]"),
        ({"task": {"examples": [{"text": "x"}]}}, "task.examples[0]"),
        ({"task": {"examples": "missing.jsonl"}}, "task.examples"),
        ({"task": {"template": "nowhere.j2"}}, "task.template"),
        ({"members": [{"name": "other", "template": "nowhere.j2"}]}, "nowhere.j2"),
    ],
)
def test_bad_config_is_a_config_error_naming_the_key(tmp_path: Path, kwargs: dict, named: str) -> None:
    path = write_task(tmp_path, **kwargs)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert named in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_task_name_and_missing_file(tmp_path: Path) -> None:
    path = write_task(tmp_path)
    path.write_text(path.read_text().replace('name = "news"\n', "", 1))
    with pytest.raises(ConfigError, match=r"missing task\.name"):
        load_config(path, env={})
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", env={})
    (tmp_path / "bad.toml").write_text("[task\nname=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml", env={})


def test_members_must_be_tables(tmp_path: Path) -> None:
    path = write_task(tmp_path)
    path.write_text('members = ["big"]\n' + path.read_text())
    with pytest.raises(ConfigError, match=r"members\[0\] must be a table"):
        load_config(path, env={})


def test_examples_from_a_jsonl_file_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "ex.jsonl").write_text('{"text": "Goal!", "label": "sport"}\n\n{"text": "IPO", "label": "business"}\n')
    task = load_config(write_task(tmp_path, task={"examples": "ex.jsonl"}), env={})
    assert [(e.text, e.label) for e in task.examples] == [("Goal!", "sport"), ("IPO", "business")]


def test_openai_base_url_overrides_the_default_member_only(tmp_path: Path) -> None:
    path = write_task(tmp_path, members=[{"name": "pinned", "base_url": "http://127.0.0.1:8001/v1"}])
    task = load_config(path, env={"OPENAI_BASE_URL": "http://127.0.0.1:9999/v1"})
    assert task.members[0].endpoint.base_url == "http://127.0.0.1:9999/v1"
    assert task.members[1].endpoint.base_url == "http://127.0.0.1:8001/v1"
    assert load_config(path, env={"OPENAI_BASE_URL": ""}).members[0].endpoint.base_url == BASE_URL


def test_the_environment_is_read_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:7777/v1")
    assert load_config(write_task(tmp_path)).primary.endpoint.base_url == "http://127.0.0.1:7777/v1"


def test_members_inherit_the_model_table(tmp_path: Path) -> None:
    (tmp_path / "other.j2").write_text("{{ text }}")
    path = write_task(
        tmp_path,
        model={"base_url": BASE_URL, "model": "m-base", "temperature": 0.3, "price_output_per_1m": 4.0, "seed": 7},
        members=[{"name": "big", "model": "m-big"}, {"template": "other.j2", "concurrency": 1}],
    )
    task = load_config(path, env={})
    default, big, unnamed = task.members
    assert [m.name for m in task.members] == ["default", "big", "member2"]
    assert big.endpoint.model == "m-big"
    for m in (big, unnamed):
        assert m.endpoint.base_url == BASE_URL
        assert m.endpoint.temperature == 0.3
        assert m.endpoint.price_output_per_1m == 4.0
        assert m.endpoint.seed == 7
    assert unnamed.endpoint.model == "m-base" and unnamed.endpoint.concurrency == 1
    assert default.endpoint.concurrency == Endpoint().concurrency
    assert big.template == default.template == tmp_path / "prompt.j2"
    assert unnamed.template == tmp_path / "other.j2"


def test_api_key_comes_from_the_env_var_named_by_api_key_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_task(tmp_path, model={"base_url": BASE_URL, "api_key_env": "MY_LABELER_KEY"})
    ep = load_config(path, env={}).primary.endpoint
    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-wrong-one")
    monkeypatch.setenv("MY_LABELER_KEY", "sk-right")
    assert ep.api_key() == "sk-right"
    monkeypatch.delenv("MY_LABELER_KEY")
    assert ep.api_key() == "not-needed"  # local servers take any key
    assert "sk-" not in path.read_text()


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"model": {"base_url": BASE_URL, "timeout": 0}}, "model.timeout must be > 0"),
        ({"model": {"base_url": BASE_URL, "timeout": 0.0}}, "model.timeout must be > 0"),
        ({"members": [{"name": "big", "timeout": 0}]}, "members[0].timeout must be > 0"),
        # issue 24 case 7: -1 gets the same message as 0 (it said ">= 0" before)
        ({"model": {"base_url": BASE_URL, "timeout": -1}}, "model.timeout must be > 0 seconds, got -1.0; 60 is usual"),
        ({"members": [{"name": "big", "timeout": -1}]}, "members[0].timeout must be > 0 seconds, got -1.0"),
        ({"labels": ["sport", " sport "]}, "labels[0] and labels[1] are both named 'sport'"),
        ({"labels": ["Tech", "sport", "tech\t"]}, "labels[0] and labels[2] are both named 'tech'"),
        ({"labels": ["sport", "   "]}, "labels[1].name must be a non-empty string"),
    ],
)
def test_values_that_cannot_work_are_rejected_naming_the_key(tmp_path: Path, kwargs: dict, named: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write_task(tmp_path, **kwargs), env={})
    assert named in str(err.value) and "\n" not in str(err.value)


def test_label_names_are_stripped(tmp_path: Path) -> None:
    task = load_config(
        write_task(
            tmp_path, labels=(" sport", "tech ", "\tbusiness\t"), task={"examples": [{"text": "x", "label": "sport "}]}
        ),
        env={},
    )
    assert task.label_names == ("sport", "tech", "business")
    assert [e.label for e in task.examples] == ["sport"]


def test_a_bad_line_in_the_examples_file_names_file_and_line(tmp_path: Path) -> None:
    from labeler.errors import InputError

    (tmp_path / "ex.jsonl").write_text('{"text": "Goal!", "label": "sport"}\n{"text": "IPO", "label": \n')
    with pytest.raises(InputError, match=r"^ex\.jsonl line 2 is not valid JSON") as err:
        load_config(write_task(tmp_path, task={"examples": "ex.jsonl"}), env={})
    assert "\n" not in str(err.value)
    (tmp_path / "ex.jsonl").write_text('{"text": "Goal!", "label": "sport"}\n{"text": "IPO"}\n')
    with pytest.raises(ConfigError, match=r"task\.examples: ex\.jsonl line 2 must have the keys text and label$"):
        load_config(write_task(tmp_path, task={"examples": "ex.jsonl"}), env={})


def test_examples_file_with_a_byte_order_mark(tmp_path: Path) -> None:
    (tmp_path / "ex.jsonl").write_bytes(b'\xef\xbb\xbf{"text": "Goal!", "label": "sport"}\n')
    task = load_config(write_task(tmp_path, task={"examples": "ex.jsonl"}), env={})
    assert [(e.text, e.label) for e in task.examples] == [("Goal!", "sport")]


# --- K items a request and per-item few-shot examples ------------------------------------------
K4 = {"base_url": BASE_URL, "model": "test-model", "items_per_request": 4}


@pytest.mark.parametrize(
    ("model", "sections", "members", "named"),
    [
        (K4, {"fewshot": {"strategy": "knn"}}, [], 'model.items_per_request = 4 .*fewshot.strategy = "knn".*'),
        (None, {"fewshot": {"strategy": "mmr"}}, [{"name": "big", "items_per_request": 5}], r"members\[0\]"),
        (K4, {"tune": {"strategies": ["fixed", "mmr"]}}, [], 'cannot try "mmr".*drop it from tune.strategies'),
    ],
)
def test_k_items_a_request_refuse_examples_chosen_per_item(
    tmp_path: Path, model: dict | None, sections: dict, members: list, named: str
) -> None:
    with pytest.raises(ConfigError, match=named) as err:
        load_config(write_task(tmp_path, model=model, sections=sections, members=members), env={})
    assert "set " in str(err.value) and "\n" not in str(err.value)  # one line naming the fix


def test_k_items_a_request_tune_shared_examples_and_keep_answer_words(tmp_path: Path) -> None:
    task = load_config(write_task(tmp_path, model=K4, task={"answers": {"sport": ["games"]}}), env={})
    assert task.quality.tune.strategies == ("fixed", "balanced")  # the default, without knn and mmr
    assert ("games", "sport") in task.quality.answers  # answer words: a multi-item prompt offers them
    one = load_config(write_task(tmp_path / "one", sections={"fewshot": {"strategy": "knn"}}), env={})
    assert one.quality.tune.strategies == ("fixed", "balanced", "knn", "mmr")
