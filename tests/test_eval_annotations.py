"""`labeler eval` on multi-label and span runs, end to end through the command line: a simulator with known
truth (synthetic items; a simulated LLM with known per-label / per-type error rates, seeded) writes a run
store as `labeler run` would (annotations as `kind.encode` texts); the per-label and per-type F1 in the
report must equal what this file counts by hand from the simulated outcomes, not by calling the evaluator."""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
from fakes import write_task

from labeler.cli.humans import register
from labeler.config import load_config
from labeler.errors import LabelerError
from labeler.evaluate import escape
from labeler.inputs import Row
from labeler.store import RunStore
from labeler.store.rows import QueueEntry, Review, Stratum
from labeler.tasktypes.gold import read_gold
from labeler.tasktypes.registry import task_type
from labeler.tasktypes.spans import Span
from labeler.types import Item, ItemResult

HOSTILE = "<img src=x onerror=alert(1)>|*x*"
LABELS = ("sport", "politics", "tech", HOSTILE)
PREVALENCE = {"sport": 0.4, "politics": 0.3, "tech": 0.25, HOSTILE: 0.2}
MISS = {"sport": 0.05, "politics": 0.35, "tech": 0.1, HOSTILE: 0.2}  # P(LLM leaves out a true label)
FALSE_ALARM = {"sport": 0.02, "politics": 0.01, "tech": 0.3, HOSTILE: 0.05}  # P(LLM adds an absent label)
TYPES = ("PER", "LOC", "ORG<script>")
# per human span of a type: P(correct, type error, boundary error, both, missed); spurious spans per item
OUTCOMES = {"PER": (0.8, 0.05, 0.1, 0.0, 0.05), "LOC": (0.5, 0.2, 0.1, 0.1, 0.1),
            "ORG<script>": (0.6, 0.1, 0.0, 0.1, 0.2)}
SPURIOUS = {"PER": 0.1, "LOC": 0.3, "ORG<script>": 0.05}
ERRS = ("correct", "type_error", "boundary_error", "boundary_and_type_error", "missed")


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.fn(args))


def _store(run_dir: Path, kind: str, labels: tuple[str, ...]) -> RunStore:
    task = load_config(write_task(run_dir.parent / f"{run_dir.name}-task", labels=labels, task={"type": kind}))
    manifest: dict[str, Any] = {"run_id": run_dir.name, "labels": list(labels),
                                "members": [{"name": "default", "template_hash": "h"}],
                                "config": task.raw, "config_path": str(task.path)}
    return RunStore.create(run_dir, manifest)


def _audit(store: RunStore, ids: list[str], rng: random.Random, n: int, *, leave_out: str = "") -> list[str]:
    """A random audit of n items in one stratum (never `leave_out`)."""
    audited = rng.sample([i for i in ids if i != leave_out], n)
    store.write_queue([QueueEntry(i, r, ("audit",), 1.0, True, None, None, n / len(ids), "all")
                       for r, i in enumerate(audited)], [Stratum("all", len(ids), n)], seed=0)
    return audited


def _md_row(md: str, first_cell: str, header_start: str) -> list[str]:
    """The cells of the row of `first_cell` in the first table whose header starts with header_start."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header_start} |"))
    for line in lines[start + 2:]:
        if not line.startswith("| "):
            break
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} under {header_start!r}")


def _no_raw(out: Path, raws: tuple[str, ...]) -> tuple[str, str]:
    md = (out / "report.md").read_text(encoding="utf-8")
    html = (out / "report.html").read_text(encoding="utf-8")
    for raw in raws:
        assert raw not in md and raw not in html, raw
    lines = md.splitlines()  # every table row has as many cells as its header: no `|` from the data split one
    for i, line in enumerate(lines):
        if line.startswith("|---"):
            j = i + 1
            while j < len(lines) and lines[j].startswith("| "):
                assert lines[j].replace("\\|", "").count("|") == line.count("|"), lines[j]
                j += 1
    return md, html


def _contains(e: dict[str, float]) -> bool:
    return e["low"] <= e["value"] <= e["high"]


# --- multi-label --------------------------------------------------------------------------------------------


def test_multi_label_report_gives_the_per_label_f1_counted_by_hand(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(19)
    kind = task_type("multi_label", LABELS)
    n = 400
    store = _store(tmp_path / "ml", "multi_label", LABELS)
    truth = [tuple(lab for lab in LABELS if rng.random() < PREVALENCE[lab]) for _ in range(n)]
    pred: list[tuple[str, ...] | None] = [
        tuple(lab for lab in LABELS if (lab in t and rng.random() >= MISS[lab])
              or (lab not in t and rng.random() < FALSE_ALARM[lab])) for t in truth]
    pred[3] = pred[7] = None  # two items fail: every human label of them is missed
    ids = [f"i{k}" for k in range(n)]

    def cell(k: int, t: tuple[str, ...]) -> str | None:
        if k == 5:
            return "sport; cars"  # an unknown label: the item has no human annotation, and a note says so
        if not t:
            return "[]"  # the empty set (an empty cell is no gold at all)
        return "; ".join(t) if k % 2 else json.dumps(list(t))  # both gold formats
    store.ingest([Row(Item(id=i, text=f"story {k}", row=k + 1), gold=cell(k, t))
                  for k, (i, t) in enumerate(zip(ids, truth, strict=True))], members=["default"])
    for i, p in zip(ids, pred, strict=True):
        store.put_result(ItemResult(i, "default", "failed", reason="unparseable") if p is None else
                         ItemResult(i, "default", "labeled", kind.encode(p), 0.9, cost=0.001))
    audited = _audit(store, ids, rng, 40, leave_out="i5")
    store.put_reviews([Review(i, "ann", kind.encode(truth[ids.index(i)]) or "[]", None, "", "csv") for i in audited])
    store.close()

    assert _cli(["eval", str(tmp_path / "ml"), "--boot", "300"]) == 0
    printed = capsys.readouterr().out
    assert "micro F1" in printed and "report:" in printed
    out = tmp_path / "ml" / "report"
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))

    # by hand: per-label counts over the items with a human annotation (all but item 5)
    keep = [k for k in range(n) if k != 5]
    rows = {r["name"]: r for r in m["evaluation"]["per_class"]}
    md, html = _no_raw(out, (HOSTILE, "<img src=x", "<script"))
    f1s = []
    for lab in LABELS:
        tp = sum(lab in truth[k] and lab in (pred[k] or ()) for k in keep)
        fp = sum(lab not in truth[k] and lab in (pred[k] or ()) for k in keep)
        fn = sum(lab in truth[k] and lab not in (pred[k] or ()) for k in keep)
        f1 = 2 * tp / (2 * tp + fp + fn)
        f1s.append(f1)
        r = rows[lab]
        assert r["f1"]["value"] == pytest.approx(f1, abs=1e-12)
        assert r["precision"]["value"] == pytest.approx(tp / (tp + fp), abs=1e-12)
        assert r["over_prediction"]["value"] == pytest.approx((tp + fp) / (tp + fn), abs=1e-12)
        assert (r["support"], r["predicted"]) == (tp + fn, tp + fp)
        assert all(_contains(r[k]) for k in ("precision", "recall", "f1", "over_prediction"))
        # the report's per-label table shows the same F1 (2 decimals) and support
        cells = _md_row(md, escape.markdown(lab), "label")
        assert cells[1] == str(tp + fn) and cells[6].startswith(f"{f1:.2f} (")
    assert m["evaluation"]["f1_macro"]["value"] == pytest.approx(sum(f1s) / len(f1s), abs=1e-12)
    wrong = sum(sum((lab in truth[k]) != (lab in (pred[k] or ())) for lab in LABELS) for k in keep)
    assert m["evaluation"]["hamming_loss"]["value"] == pytest.approx(wrong / (len(keep) * len(LABELS)), abs=1e-12)
    exact = sum(truth[k] == (pred[k] or ()) for k in keep)
    assert m["evaluation"]["subset_accuracy"]["value"] == pytest.approx(exact / len(keep), abs=1e-12)
    assert m["evaluation"]["cardinality_llm"]["value"] == pytest.approx(
        sum(len(pred[k] or ()) for k in keep) / len(keep), abs=1e-12)
    # the simulated biases come out: tech is over-predicted (30% false alarms), politics under (35% missed)
    assert rows["tech"]["over_prediction"]["low"] > 1 and rows["politics"]["over_prediction"]["high"] < 1
    assert m["data"]["failed"] == 2 and m["data"]["with_human"] == n - 1
    assert any("'cars' is not one of" in note for note in m["data"]["notes"])
    # the audit: one stratum, so the corpus exact-match share is the audited items' share, with a real interval
    au = m["audit"]
    hits = sum(truth[ids.index(i)] == (pred[ids.index(i)] or ()) for i in audited)
    assert au["exact_match"]["value"] == pytest.approx(hits / 40, abs=1e-12)
    assert au["exact_match"]["low"] < au["exact_match"]["value"] < au["exact_match"]["high"] or hits in (0, 40)
    assert au["self_weighting"] and au["evaluation"]["n"] == 40
    # humans among themselves: ann agrees with gold on the 40 audited items; the LLM by Jaccard, by hand
    def jaccard(a: tuple[str, ...], b: tuple[str, ...]) -> float:
        return 1.0 if not set(a) | set(b) else len(set(a) & set(b)) / len(set(a) | set(b))
    hum = m["humans"]
    assert hum["items"] == 40 and hum["human_vs_human"]["value"] == 1.0
    assert hum["llm_vs_human"]["value"] == pytest.approx(
        sum(jaccard(truth[ids.index(i)], pred[ids.index(i)] or ()) for i in audited) / 40, abs=1e-12)
    assert _contains(hum["llm_vs_human"]) and _contains(hum["difference"])
    # confusions: per item each missed label with each added one; the most frequent pair counted by hand
    pairs: dict[tuple[str, str], int] = {}
    for k in keep:
        t, p = truth[k], pred[k] or ()
        for a in [x for x in t if x not in p] or ["(none)"]:
            for b in [x for x in p if x not in t] or ["(none)"]:
                if (a, b) != ("(none)", "(none)"):
                    pairs[(a, b)] = pairs.get((a, b), 0) + 1
    top = m["label_confusions"][0]
    assert top["count"] == max(pairs.values()) == pairs[(top["true"], top["predicted"])]
    assert top["examples"] and all(x.startswith("story ") for x in top["examples"])
    # the hostile label name is escaped where it is shown
    assert escape.html(HOSTILE) in html and escape.markdown(HOSTILE) in md
    assert (out / "f1.png").stat().st_size > 0 and (out / "overprediction.png").stat().st_size > 0


# --- spans --------------------------------------------------------------------------------------------------


def _span_item(rng: random.Random, k: int) -> tuple[str, tuple[Span, ...], list[tuple[str, Span | None]]]:
    """An item text with 1-4 entities among filler words; each entity's simulated outcome and LLM span."""
    parts, spans, fates = [f"item {k}:"], [], []
    at = len(parts[0])
    for j in range(rng.randint(1, 4)):
        t = rng.choice(TYPES)
        word = f"Entity{k}x{j}"
        at += 1  # the space before
        s = Span(at, at + len(word), t, word)
        spans.append(s)
        parts.append(word)
        at += len(word)
        filler = f"filler{j}"
        parts.append(filler)
        at += 1 + len(filler)
        fate = rng.choices(ERRS, weights=OUTCOMES[t])[0]
        other = TYPES[(TYPES.index(t) + 1) % len(TYPES)]
        shorter = (s.start, s.end - 2)
        llm = {"correct": Span(s.start, s.end, t), "type_error": Span(s.start, s.end, other),
               "boundary_error": Span(*shorter, t), "boundary_and_type_error": Span(*shorter, other),
               "missed": None}[fate]
        fates.append((fate, llm))
    text = " ".join(parts)
    return text, tuple(spans), fates


def test_span_report_gives_the_per_type_f1_and_error_structure_counted_by_hand(tmp_path: Path) -> None:
    rng = random.Random(2026)
    kind = task_type("spans", TYPES)
    n = 300
    store = _store(tmp_path / "sp", "spans", TYPES)
    items = [_span_item(rng, k) for k in range(n)]
    true_n = dict.fromkeys(TYPES, 0)
    pred_n = dict.fromkeys(TYPES, 0)
    errors = {t: dict.fromkeys((*ERRS, "spurious"), 0) for t in TYPES}
    preds: list[tuple[Span, ...] | None] = []
    for k, (text, spans, fates) in enumerate(items):
        failed = k in (11, 12)
        out = []
        for s, (fate, llm) in zip(spans, fates, strict=True):
            true_n[s.type] += 1
            errors[s.type]["missed" if failed else fate] += 1
            if llm is not None and not failed:
                out.append(Span(llm.start, llm.end, llm.type, text[llm.start:llm.end]))
        for t in TYPES:  # spurious spans on filler words, which no human span overlaps
            f = text.find("filler0")
            if not failed and rng.random() < SPURIOUS[t] and not any(x.start == f for x in out):
                out.append(Span(f, f + 7, t, "filler0"))
                errors[t]["spurious"] += 1
        for x in out:
            pred_n[x.type] += 1
        preds.append(None if failed else tuple(sorted(out)))
    ids = [f"s{k}" for k in range(n)]
    gold = [json.dumps([{"start": s.start, "end": s.end, "type": s.type} for s in spans]) for _, spans, _ in items]
    store.ingest([Row(Item(id=i, text=text, row=k + 1), gold=g)
                  for k, (i, (text, _, _), g) in enumerate(zip(ids, items, gold, strict=True))], members=["default"])
    for i, p in zip(ids, preds, strict=True):
        store.put_result(ItemResult(i, "default", "failed", reason="no JSON") if p is None else
                         ItemResult(i, "default", "labeled", kind.encode(p), 0.8))
    _audit(store, ids, rng, 30)
    store.close()

    assert _cli(["eval", str(tmp_path / "sp"), "--boot", "300"]) == 0
    out = tmp_path / "sp" / "report"
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    ev = m["evaluation"]
    md, html = _no_raw(out, ("<script",))
    exact = {r["name"]: r for r in ev["exact"]["per_class"]}
    partial = {r["name"]: r for r in ev["partial"]["per_class"]}
    for t in TYPES:
        e = errors[t]
        f1 = 2 * e["correct"] / (true_n[t] + pred_n[t])
        pf1 = 2 * (e["correct"] + 0.5 * e["boundary_error"]) / (true_n[t] + pred_n[t])
        assert exact[t]["f1"]["value"] == pytest.approx(f1, abs=1e-12), t
        assert partial[t]["f1"]["value"] == pytest.approx(pf1, abs=1e-12), t
        assert exact[t]["over_prediction"]["value"] == pytest.approx(pred_n[t] / true_n[t], abs=1e-12)
        assert _contains(exact[t]["f1"]) and _contains(partial[t]["f1"]) and _contains(exact[t]["over_prediction"])
        got = {k: v["value"] for k, v in ev["errors_by_type"][t].items()}
        assert got == e, t
        assert all(_contains(v) for v in ev["errors_by_type"][t].values())
        # the structure adds up: every human span of the type is correct, an error of one kind, or missed
        assert sum(got[k] for k in ERRS) == true_n[t]
        cells = _md_row(md, escape.markdown(t), "entity type")
        assert cells[6].startswith(f"{f1:.2f} (") and cells[7].startswith(f"{pf1:.2f} (")
        err_cells = _md_row(md, escape.markdown(t), "entity type | correct")
        assert err_cells[1].startswith(f"{e['correct']} (") and err_cells[6].startswith(f"{e['spurious']} (")
    overall = {k: v["value"] for k, v in ev["errors"].items()}
    assert overall == {k: sum(errors[t][k] for t in TYPES) for k in (*ERRS, "spurious")}
    assert sum(overall[k] for k in ERRS) == sum(true_n.values())
    assert sum(overall[k] for k in ERRS if k != "missed") + overall["spurious"] == sum(pred_n.values())
    assert escape.html("ORG<script>") in html and "ORG&lt;script&gt;" in md
    assert (out / "span_errors.png").stat().st_size > 0 and (out / "f1.png").stat().st_size > 0
    assert m["audit"]["evaluation"]["n"] == 30


# --- the gold-cell reader and the errors --------------------------------------------------------------------


def test_read_gold_takes_both_gold_formats_and_names_what_is_wrong() -> None:
    ml = task_type("multi_label", LABELS)
    assert read_gold(ml, "Tech; sport") == ("sport", "tech")  # label-set order, the config's spelling
    assert read_gold(ml, '["politics", "tech"]') == ("politics", "tech")
    assert read_gold(ml, "") == () and read_gold(ml, "[]") == ()
    assert read_gold(ml, ml.encode(("sport", HOSTILE)) or "") == ("sport", HOSTILE)
    with pytest.raises(ValueError, match="label 'cars' is not one of"):
        read_gold(ml, "sport;cars")
    with pytest.raises(ValueError, match="neither a JSON list nor"):
        read_gold(ml, "[sport")
    sp = task_type("spans", ("PER", "LOC"))
    text = "Ada lives in Paris."
    assert read_gold(sp, '[{"start": 13, "end": 18, "label": "loc"}, {"start": 0, "end": 3, "type": "PER"}]',
                     text=text) == (Span(0, 3, "PER", "Ada"), Span(13, 18, "LOC", "Paris"))
    with pytest.raises(ValueError, match=r"gold span 10-40 lies outside the text \(0-19\)"):
        read_gold(sp, '[{"start": 10, "end": 40, "type": "PER"}]', text=text)
    with pytest.raises(ValueError, match="span type 'ORG' is not one of PER, LOC"):
        read_gold(sp, '[{"start": 0, "end": 3, "type": "ORG"}]', text=text)
    with pytest.raises(ValueError, match="needs start, end and type"):
        read_gold(sp, '[{"start": 0, "type": "PER"}]')
    with pytest.raises(ValueError, match="are not JSON"):
        read_gold(sp, "Ada/PER")


def test_eval_of_an_annotation_run_without_human_labels_names_the_fix(tmp_path: Path) -> None:
    kind = task_type("multi_label", LABELS)
    store = _store(tmp_path / "bare", "multi_label", LABELS)
    store.ingest([Row(Item(id="a", text="story", row=1))], members=["default"])
    store.put_result(ItemResult("a", "default", "labeled", kind.encode(("sport",)), 0.9))
    store.close()
    with pytest.raises(LabelerError, match="no human annotations for this run's items"):
        _cli(["eval", str(tmp_path / "bare"), "--boot", "10"])
    from labeler.evaluate import evaluate_run  # the single-label entry refuses, naming the command

    with pytest.raises(LabelerError, match="is a multi_label run; evaluate it with `labeler eval"):
        evaluate_run(tmp_path / "bare")


def test_span_eval_reads_human_spans_from_a_file_and_disagreeing_reviewers_by_the_one_rule(tmp_path: Path) -> None:
    """Three items, human spans from a CSV file (JSON in one cell) and from reviews: the reference follows
    labeler.humans' rule (majority of whole annotations; adjudication wins), known in advance."""
    kind = task_type("spans", ("PER", "LOC"))
    evil = "<b>|B*b_</b>"  # a span text that is markup and Markdown: escaped where the report quotes it
    texts = [f"Ada met {evil}.", "Rome is old.", "Zoë 🎉 in Paris"]
    store = _store(tmp_path / "f", "spans", ("PER", "LOC"))
    store.ingest([Row(Item(id=f"t{k}", text=t, row=k + 1)) for k, t in enumerate(texts)], members=["default"])
    llm = [(Span(0, 3, "PER", "Ada"),), (Span(0, 4, "PER", "Rome"),), (Span(9, 14, "LOC", "Paris"),)]
    for k, p in enumerate(llm):
        store.put_result(ItemResult(f"t{k}", "default", "labeled", kind.encode(p), 0.9))
    ada_bob = kind.encode((Span(0, 3, "PER", "Ada"), Span(8, 8 + len(evil), "PER", evil))) or ""
    store.put_reviews([
        Review("t0", "ann", ada_bob, None, "", "csv"), Review("t0", "bob", kind.encode(llm[0]) or "", None, "", "csv"),
        Review("t2", "ann", "[]", None, "", "csv"),
        Review("t2", "lead", kind.encode((Span(0, 3, "PER", "Zoë"), Span(9, 14, "LOC", "Paris"))) or "", None, "",
               "csv", adjudication=True),
    ])
    store.close()
    human = tmp_path / "human.csv"
    human.write_text('id,label,reviewer\nt0,"[{""start"": 0, ""end"": 3, ""type"": ""PER""}, '
                     f'{{""start"": 8, ""end"": {8 + len(evil)}, ""type"": ""per""}}]",cy\n'
                     't1,"[{""start"": 0, ""end"": 4, ""type"": ""LOC""}]",cy\n'
                     't1,"[{""start"": 0, ""end"": 40, ""type"": ""LOC""}]",dee\n', encoding="utf-8")
    assert _cli(["eval", str(tmp_path / "f"), "--human", str(human), "--boot", "50"]) == 0
    m = json.loads((tmp_path / "f" / "report" / "metrics.json").read_text(encoding="utf-8"))
    # t0: ann and cy say Ada+Bob, bob says Ada: Ada+Bob. t1: cy says Rome/LOC (dee's span is outside the text).
    # t2: the adjudication, Zoë/PER + Paris/LOC. LLM: t0 misses Bob, t1 a type error, t2 misses Zoë.
    errors = {k: v["value"] for k, v in m["evaluation"]["errors"].items()}
    assert errors == {"correct": 2, "type_error": 1, "boundary_error": 0, "boundary_and_type_error": 0,
                      "missed": 2, "spurious": 0}
    by = {r["name"]: r for r in m["evaluation"]["exact"]["per_class"]}
    assert by["PER"]["f1"]["value"] == pytest.approx(2 * 1 / (2 + 3))  # 1 correct; 2 predicted PER, 3 true PER
    assert by["LOC"]["f1"]["value"] == pytest.approx(2 * 1 / (1 + 2))  # 1 correct; 1 predicted LOC, 2 true LOC
    assert any("gold span 0-40 lies outside the text (0-12)" in note for note in m["data"]["notes"])
    assert m["evaluation"]["missed_examples"]["PER"] == [evil, "Zoë"]
    assert m["evaluation"]["type_confusions"] == [{"true": "LOC", "predicted": "PER", "count": 1, "examples": ["Rome"]}]
    md, html = _no_raw(tmp_path / "f" / "report", ("<b>",))
    assert "|B*b_" not in md  # Markdown syntax: harmless in HTML, escaped in report.md
    assert escape.markdown(evil) in md and escape.html(evil) in html
    assert m["data"]["with_several_humans"] == 1  # t0 (t1: one readable; t2: the adjudication settles it)
    # t0's humans: Ada+Bob (ann, cy) and Ada (bob): exact-span F1 2/3, 1, 2/3 over the pairs; the LLM's Ada
    # scores 2/3, 1, 2/3 against them too
    assert m["humans"]["human_vs_human"]["value"] == pytest.approx(7 / 9)
    assert m["humans"]["llm_vs_human"]["value"] == pytest.approx(7 / 9)
