"""`labeler tune` and `labeler relabel` on a synthetic model with a known prior bias: the random audit is
never used to fit or choose (its items are never asked, never examples); every held-out score comes from
a correction fitted without the item (by construction); answers are paid for once; the tuned task TOML
is a valid task; the relabel pays only for prompts that changed and its labels lose the bias."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from fakes import FakeBackend, completion, tok, user_text
from test_runner import _patch_backends, make_task

from labeler.config import load_config
from labeler.errors import TuneError
from labeler.label import pipeline
from labeler.record import records
from labeler.review.router import route_run
from labeler.store import RunStore
from labeler.tune.candidates import dumps_toml
from labeler.tune.protocol import (
    bootstrap_indices,
    choose,
    never_scored_on_fitted,
    score_candidate,
    stratified_folds,
)
from labeler.tune.relabel import relabel_run
from labeler.tune.routing import audit_accuracy_above, threshold_for
from labeler.tune.run import tune_run
from labeler.types import Request

LABELS = ("business", "sport", "tech")
PRIOR = np.array([10.0, 1.0, 1.0]) / 12.0
N = 90


def corpus(seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    post = rng.dirichlet([0.5, 0.5, 0.5], size=N)
    biased = post * PRIOR
    return biased / biased.sum(1, keepdims=True), [LABELS[i] for i in post.argmax(1)]


def backend(probs: np.ndarray) -> FakeBackend:
    def answer(request: Request) -> object:
        text = user_text(request)
        p = probs[int(text.split("item ")[1].split(":")[0]) - 1] if text.startswith("item ") else PRIOR
        label = LABELS[int(np.argmax(p))]
        top = {lab: float(q) for lab, q in zip(LABELS, p, strict=True)}
        lp = [tok('{"label": "', 1.0), tok(label, top[label], top), tok('"}', 1.0)]
        return completion(json.dumps({"label": label}), logprobs=lp)

    return FakeBackend(answer)  # type: ignore[arg-type]


def test_folds_are_stratified_and_no_item_is_scored_by_a_correction_fitted_on_it() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=60)
    fold_of = stratified_folds(y, 3, n_splits=5, seed=1)
    for c in range(3):
        counts = np.bincount(fold_of[y == c], minlength=5)
        assert counts.max() - counts.min() <= 1
    probs = rng.dirichlet([1, 1, 1], size=60)
    boot = bootstrap_indices(60, n_boot=200, seed=0)
    scores = score_candidate("c", probs, y, kinds=("none", "offsets_ll", "contextual"), fold_of=fold_of, boot=boot)
    assert [s.correction for s in scores] == ["none", "offsets_ll"]  # contextual needs content-free answers
    for s in scores:
        assert never_scored_on_fitted(s)
        assert s.low <= s.macro_f1 <= s.high
    assert choose(scores, one_se=False).macro_f1 == max(s.macro_f1 for s in scores)


def test_the_threshold_for_a_target_accuracy_reviews_the_least_confident() -> None:
    conf = np.array([0.99, 0.97, 0.95, 0.9, 0.6, 0.5])
    t = threshold_for(conf, 0.95)  # accepting the top 4 leaves mean 0.9525; the top 5, 0.882
    assert (t.threshold, t.review, t.expected_accuracy) == (0.9, 2, pytest.approx(0.9525))
    assert threshold_for(conf, 0.999).review == 6
    acc, low, high, n = audit_accuracy_above(conf, np.array([1, 1, 0, 1, 0, 1]), np.ones(6), 0.9)
    assert (acc, n) == (0.75, 4) and low < 0.75 < high


def test_tune_then_relabel_on_a_biased_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probs, truth = corpus()
    task = make_task(
        tmp_path,
        truth,
        sections={"tune": {"strategies": ["fixed"], "corrections": ["none", "contextual", "offsets_ll"]}},
    )
    made = _patch_backends(monkeypatch, lambda name: backend(probs))
    run_dir, _ = asyncio.run(pipeline.start_run(task, run_dir=tmp_path / "runs" / "base", show_progress=False))
    route_run(run_dir, audit_fraction=0.2, max_items=30)
    store = RunStore.open(run_dir)
    audit = {e.item_id for e in store.queue() if e.audit}
    texts = {r.id: r.text for r in store.item_rows()}
    before = {r.id: r.label for r in records(store)}
    store.close()
    assert len(audit) >= 15
    asked_before = sum(b.calls for b in made)

    report = tune_run(run_dir, max_labels=60)
    assert report["items"]["n"] == 60 and report["items"]["audit_left_out"] == len(audit)
    assert not set(report["oof"]["ids"]) & audit
    tune_requests = [r for b in made for r in b.requests][asked_before:]
    assert not any(texts[i] in user_text(r) for r in tune_requests for i in audit)  # never asked, never an example
    assert report["chosen"]["correction"] in ("contextual", "offsets_ll")
    assert report["chosen"]["macro_f1"] > max(s["macro_f1"] for s in report["scores"] if s["correction"] == "none")
    assert report["cost"]["human_labels"] == 60 and report["applied_in_place"]  # same prompts as the run
    tuned = load_config(report["tuned_toml"], env={})
    assert tuned.quality.correction.kind == report["chosen"]["correction"]

    again = tune_run(run_dir, max_labels=60)  # paid once: every answer now comes from the cache
    assert again["cost"]["asked"] == 0 and again["chosen"] == report["chosen"]

    calls = sum(b.calls for b in made)
    out = relabel_run(run_dir, show_progress=False)
    assert sum(b.calls for b in made) == calls and out["asked"] == 0  # unchanged prompts: all from the cache
    new = RunStore.open(Path(out["run_dir"]))
    after = {r.id: r.label for r in records(new)}
    assert {e.item_id for e in new.queue() if e.audit} == audit
    new.close()
    ids = sorted(audit)
    right_before = np.mean([before[i] == truth[int(i[1:]) - 1] for i in ids])
    right_after = np.mean([after[i] == truth[int(i[1:]) - 1] for i in ids])
    assert right_after > right_before + 0.2  # measured on the audit, which no choice saw
    assert out["routing"]["rows"] and out["routing"]["audit_items"] == len(audit)

    assert relabel_run(run_dir, show_progress=False)["asked"] == 0  # the same tuning again: a resume, nothing asked
    toml = Path(report["tuned_toml"])  # a later tuning that chose otherwise: its relabel is not a resume
    toml.write_text(toml.read_text(encoding="utf-8").replace('name = "', 'name = "re-', 1))  # [task] name
    with pytest.raises(TuneError, match="relabeled under an earlier tuning; pass --run-dir DIR"):
        relabel_run(run_dir, show_progress=False)
    fresh = relabel_run(run_dir, new_dir=tmp_path / "runs" / "base-retuned", show_progress=False)
    new = RunStore.open(Path(fresh["run_dir"]))
    assert new.manifest["task"].startswith("re-")  # a new run, under the new TOML
    new.close()


def test_tune_needs_human_labels_outside_the_audit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probs, truth = corpus()
    task = make_task(tmp_path, truth[:10] + [""] * (N - 10))
    _patch_backends(monkeypatch, lambda name: backend(probs))
    run_dir, _ = asyncio.run(pipeline.start_run(task, run_dir=tmp_path / "runs" / "base", show_progress=False))
    with pytest.raises(TuneError, match="at least 20"):
        tune_run(run_dir)


def test_the_tuned_toml_writer_round_trips_through_the_config_loader(tmp_path: Path) -> None:
    import tomllib

    doc = {
        "_note": "a note\non two lines",
        "task": {"name": "t", "answers": {"a": ["x", "y"]}, "k": 3, "on": True, "w": 0.5},
        "labels": [{"name": "a", "description": 'say "hi"'}, {"name": "b"}],
    }
    text = dumps_toml(doc)
    assert text.startswith("# a note\n# on two lines\n")
    back = tomllib.loads(text)
    assert back == {k: v for k, v in doc.items() if k != "_note"}


def test_the_cli_module_registers_tune_and_relabel_cheaply() -> None:
    import argparse
    import subprocess
    import sys

    from labeler.cli import tune as tune_cli

    p = argparse.ArgumentParser()
    tune_cli.register(p.add_subparsers(dest="command"))
    args = p.parse_args(["tune", "runs/x", "--dev", "dev.csv", "--strategy", "knn", "--strategy", "fixed"])
    assert (args.fn, args.strategy, args.dev) == (tune_cli.cmd_tune, ["knn", "fixed"], Path("dev.csv"))
    args = p.parse_args(["relabel", "runs/x", "--run-dir", "runs/y", "--target", "0.95"])
    assert (args.fn, args.run_dir_out, args.target) == (tune_cli.cmd_relabel, Path("runs/y"), [0.95])
    code = "import sys, labeler.cli.tune; print(any(m in sys.modules for m in ('numpy', 'sklearn', 'jinja2')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


@pytest.mark.parametrize(
    ("sections", "named"),
    [
        ({"fewshot": {"strategy": "nearest"}}, "fewshot.strategy"),
        ({"fewshot": {"k": -1}}, "fewshot.k"),
        ({"fewshot": {"mmr_lambda": 2}}, "fewshot.mmr_lambda"),
        ({"fewshot": {"pool": "missing.jsonl"}}, "fewshot.pool"),
        ({"tune": {"strategies": ["fixed", "nearest"]}}, "tune.strategies"),
        ({"tune": {"folds": 1}}, "tune.folds"),
        ({"tune": {"budget": 3}}, "tune.budget"),
        ({"correction": {"kind": "platt"}}, "correction.kind"),
        ({"correction": {"kind": "offsets_f1", "offsets": {"business": 1.0}}}, "every label"),
        ({"correction": {"offsets": {"finance": 1.0}}}, "correction.offsets"),
    ],
)
def test_bad_quality_keys_are_config_errors_naming_the_key(tmp_path: Path, sections: dict, named: str) -> None:
    from fakes import write_task

    from labeler.errors import ConfigError

    with pytest.raises(ConfigError, match=named):
        load_config(write_task(tmp_path, sections=sections), env={})


def test_variants_resolve_their_templates_and_unknown_names_are_refused(tmp_path: Path) -> None:
    from fakes import write_task

    from labeler.errors import ConfigError
    from labeler.tune.candidates import candidates

    (tmp_path / "alt.j2").write_text("{{ text }}", encoding="utf-8")
    path = write_task(tmp_path, sections={"tune": {"strategies": ["fixed", "knn"]}})
    with path.open("a", encoding="utf-8") as fh:
        fh.write('\n[[variants]]\nname = "plain"\n\n[[variants]]\nname = "alt"\ntemplate = "alt.j2"\n')
    task = load_config(path, env={})
    assert [c.name for c in candidates(task)] == ["plain/fixed", "plain/knn8", "alt/fixed", "alt/knn8"]
    assert [c.name for c in candidates(task, variants=["alt"], strategies=["fixed"])] == ["alt/fixed"]
    assert task.quality.variants[1].template == tmp_path / "alt.j2"
    with pytest.raises(ValueError, match="no variant named nope"):
        candidates(task, variants=["nope"])
    with path.open("a", encoding="utf-8") as fh:
        fh.write('\n[[variants]]\nname = "bad"\ntemplate = "none.j2"\n')
    with pytest.raises(ConfigError, match=r"variants\[2\].template"):
        load_config(path, env={})


# --- K items a request, ensembles, paths in reports ----------------------------------------------
def multi_backend(probs: np.ndarray) -> FakeBackend:
    """As `backend`, and a K-item request answered item by item: {"answers": [{"id", "label"}, ...]}."""
    single = backend(probs).script

    def answer(request: Request) -> object:
        lines = user_text(request).splitlines()
        if not lines or not lines[0].startswith('{"id"'):
            return single(request)
        toks = [tok('{"answers": [', 1.0)]
        for n, line in enumerate(lines):
            item = json.loads(line)
            text = item["text"]
            p = probs[int(text.split("item ")[1].split(":")[0]) - 1] if text.startswith("item ") else PRIOR
            label = LABELS[int(np.argmax(p))]
            top = {lab: float(q) for lab, q in zip(LABELS, p, strict=True)}
            toks += [tok((", " if n else "") + f'{{"id": "{item["id"]}", "label": "', 1.0), tok(label, top[label], top)]
            toks.append(tok('"}', 1.0))
        toks.append(tok("]}", 1.0))
        return completion("".join(t.token for t in toks), logprobs=toks)

    return FakeBackend(answer)  # type: ignore[arg-type]


def test_tune_asks_k_items_a_request_as_the_run_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_multi import is_multi

    from labeler.tune.relabel import format_relabel
    from labeler.tune.run import format_report

    probs, truth = corpus()
    task = make_task(
        tmp_path, truth, model={"items_per_request": 5}, sections={"tune": {"corrections": ["none", "offsets_ll"]}}
    )
    assert task.quality.tune.strategies == ("fixed", "balanced")  # knn and mmr would need K example sets
    made = _patch_backends(monkeypatch, lambda name: multi_backend(probs))
    run_dir, _ = asyncio.run(pipeline.start_run(task, run_dir=tmp_path / "runs" / "base", show_progress=False))
    asked_before = sum(b.calls for b in made)
    monkeypatch.chdir(tmp_path)

    with pytest.raises(TuneError, match="--strategy knn chooses examples per item"):
        tune_run(run_dir, strategies=["knn"])
    report = tune_run(run_dir, max_labels=60)
    tune_requests = [r for b in made for r in b.requests][asked_before:]
    assert tune_requests and all(is_multi(r) for r in tune_requests)  # 5 items a prompt, like the run's
    assert [c["name"] for c in report["candidates"]] == ["task/fixed", "task/balanced8"]
    assert report["applied_in_place"]  # the run's own 5-item prompts: the same answers
    text = format_report(report)
    assert "tuned task: runs/base/tuned.toml" in text and str(tmp_path) not in text
    note = Path(report["tuned_toml"]).read_text(encoding="utf-8").split("\n[")[0]
    assert "labeler tune runs/base`" in note and "labeler run runs/base/tuned.toml" in note

    calls = sum(b.calls for b in made)
    out = relabel_run(run_dir, show_progress=False)
    assert out["asked"] == 0 and sum(b.calls for b in made) == calls  # the tuning's answers are the relabel's
    text = format_relabel(out)
    assert text.startswith("relabeled into runs/base-tuned:") and str(tmp_path) not in text


def test_tune_refuses_an_ensemble_naming_its_members(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probs, truth = corpus()
    task = make_task(tmp_path, truth, members=[{"name": "big"}])
    made = _patch_backends(monkeypatch, lambda name: backend(probs))
    run_dir, _ = asyncio.run(pipeline.start_run(task, run_dir=tmp_path / "runs" / "base", show_progress=False))
    calls = sum(b.calls for b in made)
    with pytest.raises(TuneError, match=r"2 ensemble members \(default, big\).*tune a run of one member") as err:
        tune_run(run_dir)
    assert "\n" not in str(err.value) and sum(b.calls for b in made) == calls  # refused before asking anything
