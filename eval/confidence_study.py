"""Which confidence can the router trust? Every method side by side on the bundled corpus.

Runs (or reuses) two labeled runs on the embedded models:
  runs/study-ensemble    Gemma-3-270M, two prompt variants as ensemble members, logprob + self-consistency
  runs/study-verbalized  SmolLM2-135M-Instruct with its chat template, verbalized (JSON) + logprob
and for each confidence view prints accuracy, ECE (10 equal-width bins on the top-label confidence)
before and after calibration, and AUROC of the confidence for correctness, as a Markdown table.
"After" is out-of-fold: each item is scored by a calibrator (temperature, Platt or isotonic, chosen
by cross-validated log-loss) fitted on the other folds, never on itself.

    python eval/confidence_study.py            # runs what is missing (about 30 minutes on 2 cores)
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from labeler.confidence.calibrators import CalData, ece, select_calibrator
from labeler.confidence.run import calibrate_run, human_labels, method_data
from labeler.config import TaskConfig, load_config
from labeler.label.pipeline import resume_run, start_run
from labeler.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
RUNS = {
    "study-ensemble": ROOT / "tasks" / "news_topic_ensemble.toml",
    "study-verbalized": ROOT / "tasks" / "news_topic_verbalized.toml",
}


def ensure_run(name: str, config: Path) -> Path:
    run_dir = ROOT / "runs" / name
    task = load_config(config)
    if not (run_dir / "manifest.json").exists():
        asyncio.run(start_run(task, run_dir=run_dir, show_progress=True))
    else:
        asyncio.run(resume_run(run_dir, show_progress=True))
    return run_dir


def member_data(store: RunStore, task: TaskConfig, member: str, method: str, human: dict[str, str]) -> CalData:
    """One member's top-label confidence under one method, on the human-labelled items."""
    conf, correct = [], []
    for row in store.conn.execute(
        "SELECT item_id, label, distributions FROM results WHERE member = ? AND status = 'labeled'", (member,)
    ):
        dist = json.loads(row["distributions"]).get(method)
        if dist is None or row["item_id"] not in human:
            continue
        conf.append(dist.get(row["label"], 0.0))
        correct.append(int(row["label"] == human[row["item_id"]]))
    return CalData.from_confidence(conf, correct)


def row(name: str, data: CalData) -> str:
    conf, correct = data.conf, data.correct
    sel = select_calibrator(data)
    auroc = roc_auc_score(correct, conf) if 0 < correct.sum() < len(correct) else float("nan")
    return (
        f"| {name} | {len(data)} | {correct.mean():.3f} | {ece(conf, correct):.3f} | {ece(sel.oof, correct):.3f} "
        f"({sel.kind}) | {auroc:.3f} | {conf[correct == 1].mean():.2f} / {conf[correct == 0].mean():.2f} |"
    )


def main() -> None:
    lines = [
        "| confidence | n | accuracy | ECE before | ECE after (out-of-fold, kind) | AUROC | mean conf right / wrong |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, config in RUNS.items():
        run_dir = ensure_run(name, config)
        store = RunStore.open(run_dir)
        task = load_config(config)
        calibrate_run(store, task)  # combines members and stores the calibrators in the run
        human = human_labels(store, task.label_names)
        model = task.primary.endpoint.model
        for member in task.members:
            for method in task.confidence.methods:
                data = member_data(store, task, member.name, method, human)
                if len(data):
                    lines.append(row(f"{model} · {member.name} · {method}", data))
        if len(task.members) > 1:
            for method in task.confidence.methods:
                _, data = method_data(store, task, method, human)
                lines.append(row(f"{model} · both members averaged · {method}", data))
            _, data = method_data(store, task, "ensemble", human)
            lines.append(row(f"{model} · ensemble ({task.confidence.combine} vote)", data))
            share = [r[0] for r in store.conn.execute("SELECT vote_share FROM combined")]
            lines.append(f"<!-- members disagree on {np.mean(np.asarray(share) < 1):.1%} of items -->")
        store.close()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
