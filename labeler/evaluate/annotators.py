"""The report's section on annotators: every LLM member and human reviewer side by side, by the consensus
of all of them (labeler.aggregate, the task's `[aggregate] method`).

    labeler.aggregate.report.annotator_metrics(run_dir)  ->  metrics["annotators"] (`labeler eval` passes it
                                     to evaluate_run as `extra`: labeler.tasktypes imports labeler.evaluate, so
                                     labeler.evaluate may not import labeler.aggregate, which reads task types)
    insert_section(text, m, fmt)     ->  report.md / report.html with the section added (at the end)

Per annotator: its estimated confusion matrix (row = the consensus's true class, shares of its answers),
its accuracy with a 95% interval, its per-class over-prediction (answers / consensus share on its items),
the accuracy of the consensus of the others on the same items (refitted without it), and whether it is
worse than them (its interval wholly below). Where the input has gold labels, each annotator's and the
consensus's accuracy on them check the estimates. Names and labels are escaped like the rest of the report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from labeler.evaluate import escape


def _p(x: Any) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _r(x: Any) -> str:
    return "–" if x is None else f"{x:.2f}"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], fmt: str) -> str:
    """Cells already escaped for `fmt`."""
    if fmt == "md":
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def section(a: Mapping[str, Any], fmt: str) -> str:
    """The section's text for `fmt` ("md" or "html")."""
    esc: Callable[[object], str] = {"md": escape.markdown, "html": escape.html}[fmt]
    classes = [esc(c) for c in a["classes"]]
    people = a["annotators"]
    parts: list[tuple[str, str]] = []  # (kind, text): heading, paragraph or table
    parts.append(("h", "Annotators: LLM members and reviewers side by side"))
    gold = a["consensus_gold"]
    gold_text = f" On {gold['n']} gold items the consensus is {_p(gold['accuracy'])} right." if gold["n"] else ""
    parts.append(
        (
            "p",
            f"By the {esc(a['method'])} consensus of all {len(people)} annotators (aggregate.method). Accuracy is "
            "the posterior-expected share of an annotator's answers that are right, with a 95% Wilson interval "
            "at its number of answers; 'others' is the consensus of the other annotators (refitted without it) "
            "on the same items; an annotator is worse than the others when its whole interval lies below."
            + gold_text,
        )
    )
    for note in a.get("notes", []):
        parts.append(("p", esc(note)))
    rows = []
    for q in people:
        acc = q["accuracy"]
        worse = "**worse than the others**" if fmt == "md" else "<b>worse than the others</b>"
        rows.append(
            [
                esc(q["name"]),
                q["kind"],
                str(q["n"]),
                f"{_p(acc['value'])} ({_p(acc['low'])}–{_p(acc['high'])})",
                f"{_p(q['gold']['accuracy'])} of {q['gold']['n']}" if q["gold"]["n"] else "–",
                _p(q["others_accuracy"]),
                worse if q["worse_than_others"] else "",
            ]
        )
    parts.append(("t", _table(["annotator", "kind", "answers", "accuracy", "on gold", "others", ""], rows, fmt)))
    if a["kind"] == "single":
        parts.append(("p", "Over-prediction per class (its answers / the consensus's share on its items; 1 = none):"))
        rows = [[esc(q["name"]), *(_r(q["overprediction"].get(c)) for c in a["classes"])] for q in people]
        parts.append(("t", _table(["annotator", *classes], rows, fmt)))
        parts.append(("p", "Estimated confusion matrices (row: the true class; cells: shares of its answers):"))
        for q in people:
            rows = [[classes[t], *(_p(x) for x in row)] for t, row in enumerate(q["confusion"])]
            parts.append(("t", _table([f"{esc(q['name'])}: true class", *classes], rows, fmt)))
    else:
        parts.append(("p", "Multi-label: each label is a yes/no question; accuracy is the mean over the labels."))
    if fmt == "md":
        return "\n\n".join(("## " + t) if k == "h" else t for k, t in parts) + "\n"
    return "".join(f"<h2>{t}</h2>" if k == "h" else (f"<p>{t}</p>" if k == "p" else t) for k, t in parts)


def insert_section(text: str, m: Mapping[str, Any], fmt: str) -> str:
    """`text` (a rendered report) with the annotators section at its end, when metrics hold one."""
    a = m.get("annotators")
    if not a:
        return text
    if fmt == "html" and "</body>" in text:
        head, _, tail = text.rpartition("</body>")
        return head + section(a, fmt) + "</body>" + tail
    return text.rstrip("\n") + "\n\n" + section(a, fmt)
