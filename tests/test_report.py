"""The report's escaping: label names and item texts never become markup or terminal control sequences, in
report.md, report.html, metrics.json's summary or the plots; and the escaping functions on their own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fakes import write_task

from labeler import evaluate
from labeler.config import load_config
from labeler.evaluate import escape
from labeler.evaluate.gather import AuditDesign, EvalInputs
from labeler.evaluate.measure import build_metrics
from labeler.evaluate.report import render, summary_sentences
from labeler.inputs import Row
from labeler.store import RunStore
from labeler.types import Item, ItemResult

EVIL = ("<script>alert(1)</script>", "a|b](http://evil)", "\x1b[2Jclear $\\frac$")
RAW = ("<script>", "](http://evil)", "\x1b", "\x85", "\u202e")  # markup or a control in either format
RAW_MD = ("a|b", "*bold*", "`code`")  # Markdown syntax only: `|` splits a table cell; harmless in HTML


def _evil_run(run_dir: Path, n: int = 60) -> None:
    rng = np.random.default_rng(0)
    truth = rng.choice(len(EVIL), size=n).tolist()
    manifest: dict[str, Any] = {
        "run_id": "evil<b>",
        "labels": list(EVIL),
        "members": [{"name": "default", "template_hash": "h"}],
    }
    task = load_config(write_task(run_dir.parent / "evil-task", labels=EVIL))
    manifest |= {"config": task.raw, "config_path": str(task.path)}
    store = RunStore.create(run_dir, manifest)
    text = "story <script>x</script> [click](http://evil) \x1b[2J a|b *bold* `code` \x85 \u202e end"
    store.ingest(
        [Row(Item(id=f"i{k}", text=f"{text} {k}", row=k + 1), gold=EVIL[t]) for k, t in enumerate(truth)],
        members=["default"],
    )
    for k, t in enumerate(truth):
        p = EVIL[(t + 1) % 3] if k % 3 == 0 else EVIL[t]  # every third item wrong: confusion pairs with examples
        c = 0.5 if k % 3 == 0 else 0.9
        dist = {lab: (c if lab == p else (1 - c) / 2) for lab in EVIL}
        store.put_result(ItemResult(f"i{k}", "default", "labeled", p, c, {"logprob": dist}))
    store.close()


def test_report_files_carry_no_raw_markup_or_control_characters(tmp_path: Path) -> None:
    _evil_run(tmp_path / "evil")
    out, m = evaluate.evaluate_run(tmp_path / "evil", n_boot=50)
    md = (out / "report.md").read_text(encoding="utf-8")
    html = (out / "report.html").read_text(encoding="utf-8")
    summary = " ".join(json.loads((out / "metrics.json").read_text(encoding="utf-8"))["summary"])
    for raw in RAW:
        assert raw not in md, raw
        assert raw not in html, raw
    for raw in RAW_MD:
        assert raw not in md, raw
    for raw in ("\x1b", "\x85", "\u202e"):
        assert raw not in summary
    # the escaped forms are there: the names still read as themselves once rendered
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "a\\|b&#93;(http://evil)" in md and "a|b&#93;(http://evil)" in html
    assert r"\\x1b&#91;2Jclear" in md and r"\x1b&#91;2Jclear" in html  # md: the backslash escaped too
    assert "# Evaluation of run evil&lt;b&gt;" in md
    # every table row of report.md has as many cells as its header: no `|` from the data split a cell
    lines = md.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|---"):
            cells = line.count("|") - 1
            j = i + 1
            while j < len(lines) and lines[j].startswith("| "):
                assert lines[j].replace("\\|", "").count("|") - 1 == cells, lines[j]
                j += 1
    assert (out / "confusion.png").stat().st_size > 0  # `$\frac$` in a label did not break mathtext
    assert m["confusion_pairs"][0]["examples"]


@pytest.mark.parametrize(
    ("text", "md", "html"),
    [
        ("<b>&", "&lt;b&gt;&amp;", "&lt;b&gt;&amp;"),
        ("[x](http://e)", "&#91;x&#93;(http://e)", "&#91;x&#93;(http://e)"),
        (
            "a|b *c* _d_ `e` ~f~ #g $m$ \\h",
            r"a\|b \*c\* \_d\_ \`e\` \~f\~ \#g \$m\$ \\h",
            r"a|b *c* _d_ `e` ~f~ #g $m$ \h",
        ),
        ("\x1b[2J\x00\x7f\x85\u202e", r"\\x1b&#91;2J\\x00\\x7f\\x85\\u202e", r"\x1b&#91;2J\x00\x7f\x85\u202e"),
        ("two\nlines\r\nand\ttab", "two lines and tab", "two lines and tab"),
        ("'\"", "'\"", "&#x27;&quot;"),
        (3, "3", "3"),
    ],
)
def test_escape_functions(text: object, md: str, html: str) -> None:
    assert escape.markdown(text) == md
    assert escape.html(text) == html


def test_visible_keeps_newlines_only_when_asked() -> None:
    assert escape.visible("a\r\nb\x07") == "a b\\x07"
    assert escape.visible("a\r\nb\rc\n\td", newlines=True) == "a\nb\nc\n d"
    assert escape.visible("plain — “quoted” κ") == "plain — “quoted” κ"


def _inputs(*, reviewer_on_audit: bool) -> EvalInputs:
    """300 items, five labels, an LLM right 85% of the time; gold for every item; 3 items per predicted label
    audited and the 27 least confident of the others routed as doubtful; reviewer r1 labels the doubtful
    items and, if asked, the audited ones."""
    rng = np.random.default_rng(4)
    labels = ("a", "b", "c", "d", "e")
    truth = rng.choice(5, size=300)
    right = rng.random(300) < 0.85
    pred = np.where(right, truth, (truth + 1) % 5)
    conf = np.where(right, rng.uniform(0.5, 1, 300), rng.uniform(0.2, 0.7, 300))
    ids = tuple(f"i{k}" for k in range(300))
    strata = {}
    for j, lab in enumerate(labels):
        for k in rng.choice(np.flatnonzero(pred == j), size=3, replace=False):
            strata[ids[k]] = lab
    least_confident = [k for k in np.argsort(conf) if ids[k] not in strata]
    doubtful = {ids[k] for k in least_confident[:27]}
    human = []
    for k, i in enumerate(ids):
        h = {"gold": labels[truth[k]]}
        if i in doubtful or (reviewer_on_audit and i in strata):
            h["r1"] = labels[truth[k]] if k % 7 else labels[(truth[k] + 2) % 5]
        human.append(h)
    return EvalInputs(
        run_id="small",
        labels=labels,
        ids=ids,
        texts=tuple(f"text {k}" for k in range(300)),
        pred=tuple(labels[p] for p in pred),
        primary_pred=tuple(labels[p] for p in pred),
        confidences={"confidence": tuple(float(c) for c in conf)},
        distributions={},
        member_labels={},
        human=tuple(human),
        reviewed=frozenset(doubtful | (set(strata) if reviewer_on_audit else set())),
        audit=AuditDesign(
            strata=strata,
            populations={lab: int((pred == j).sum()) for j, lab in enumerate(labels)},
            routed=frozenset(doubtful),
            queue_size=len(doubtful | set(strata)),
        ),
    )


def test_small_audit_report_states_what_each_number_covers() -> None:
    m = build_metrics(_inputs(reviewer_on_audit=True), n_boot=50)
    au = m["audit"]
    assert au["ppi_equals_stratified"] and all(p["ppi"] is None for p in au["prevalence"])
    assert all(p["classical"]["high"] - p["classical"]["low"] > 0.1 for p in au["prevalence"])  # 3 per stratum
    sizes = m["sample_size"]
    assert min(sizes["accuracy"].values()) > 1
    assert all(v["classical"] > 1 and v["ppi"] > 1 for v in sizes["prevalence_pm_0.02"].values())
    band = m["humans"]["band"]
    assert band["basis"] == "audit" and band["n_items"] == 15 and band["left_out_as_doubtful"] > 0
    md = render(m | {"summary": summary_sentences(m)}, {}, "md")
    assert "| label | LLM share | audit (stratified) |" in md and "| prediction-powered |" not in md
    assert "on the 15 audited items with several humans (a random sample" in md

    selected = build_metrics(_inputs(reviewer_on_audit=False), n_boot=50)["humans"]["band"]
    assert selected["basis"] == "selected" and selected["n_items"] == 27
    assert "chose as doubtful" in " ".join(summary_sentences(build_metrics(_inputs(reviewer_on_audit=False))))
