"""K items a request for a multi-label task on the embedded model: entity_kinds at K = 1 and K = 4, side by side.

One llama-server (Gemma-3-270M) serves both settings in turn, over the same first N items of the bundled task
prompts/entity_kinds (CoNLL-2003 sentences, the kinds of names each mentions), each from an empty cache through
labeler's whole pipeline (store, cache, the task type's parse, the re-ask alone of items a K-item answer misses
or garbles). K = 1 asks with the bundled few-shot template; K = 4 with the same six examples rendered as one
K-item block (MULTI_TEMPLATE below), the grammar writing every id. Confidence is off in both (samples would be
asked one item at a time whatever K is): the figures are of the labeling requests alone.

The machine is shared, so speed is printed as a ratio (K = 4 items/s over K = 1 items/s, measured minutes apart);
quality is micro-F1 over the label set (scikit-learn) against the annotators' kinds, beside what naming all four
kinds for every item scores and (K > 1) how often an item's answer is the example block's answer at its position.

    python eval/bench_multi_tasktypes.py                 # 24 items
    python eval/bench_multi_tasktypes.py --items 48 --k 1 4 --repeat 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from sklearn.metrics import f1_score
from sklearn.preprocessing import MultiLabelBinarizer

from labeler.config import ConfidenceConfig, TaskConfig, load_config
from labeler.inputs import read_rows
from labeler.label.backends import OpenAIBackend
from labeler.label.local import LocalServer
from labeler.label.pipeline import build_manifest
from labeler.label.runner import label_pending
from labeler.store import Cache, RunStore
from labeler.types import Completion, Request

ROOT = Path(__file__).resolve().parents[1]

# The six examples of prompts/entity_kinds/fewshot.j2, as one block of K-item answers.
EXAMPLES = [
    ("He will be replaced by Eliahu Ben-Elissar, a former Israeli envoy to Egypt and right-wing Likud party "
     "politician.", ["person", "organization", "location", "misc"]),
    ("Moyer retired 11 straight batters between the third and seventh innings and threw two or fewer pitches to 11 "
     "of the 29 batters he faced.", ["person"]),
    ("A Turkish airliner on flight from Istanbul to Vienna on Wednesday landed in emergency at Sofia airport after "
     "receiving a bomb threat, said an airport official.", ["location", "misc"]),
    ('"The Foreign Ministry is trying to find out from the Greek embassy why Albanian refugees have been deported '
     'from Greece," Shehu told Reuters.', ["person", "organization", "location", "misc"]),
    ("The most deflating double fault came when Oncins was serving to force a fifth set, leading 6-4 in the "
     "tiebreaker.", ["person"]),
    ("But he will be ineligible for the rest of Aberdeen's UEFA Cup campaign as he has already played for Sion in "
     "this season's Cup Winners' Cup.", ["organization", "misc"]),
]


def multi_template() -> str:
    numbered = list(enumerate(EXAMPLES, 1))
    lines = "\n".join(json.dumps({"id": f"e{n}", "text": t}, ensure_ascii=False) for n, (t, _) in numbered)
    answers = json.dumps({"answers": [{"id": f"e{n}", "labels": labs} for n, (_, labs) in enumerate(EXAMPLES, 1)]})
    return (
        f"Sentences:\n{lines}\nKinds: {answers}\n\nSentences:\n"
        "{% for it in items %}\n{{ it.line }}\n{% endfor %}\nKinds:"
    )


@dataclass
class Counting:
    """The backend, counting K-item requests and one-item ones (re-asks) and their prompt tokens."""

    inner: OpenAIBackend
    multi: int = 0
    single: int = 0
    prompt_tokens: int = 0

    async def complete(self, request: Request) -> Completion:
        c = await self.inner.complete(request)
        if '"answers' in (request.grammar or ""):
            self.multi += 1
        else:
            self.single += 1
        self.prompt_tokens += c.input_tokens
        return c

    async def aclose(self) -> None:
        pass


def task_for(base: TaskConfig, base_url: str, k: int, corpus: Path, template: Path) -> TaskConfig:
    member = base.primary
    ep = replace(member.endpoint, base_url=base_url, profile="gemma3-270m", items_per_request=k)
    return replace(base, members=(replace(member, endpoint=ep),), input_path=corpus,
                   confidence=ConfidenceConfig(methods=()), multi_template=template if k > 1 else None)


async def one_k(base: TaskConfig, base_url: str, k: int, corpus: Path, work: Path) -> dict[str, float]:
    template = work / "multi.j2"
    template.write_text(multi_template(), encoding="utf-8")
    task = task_for(base, base_url, k, corpus, template)
    store = RunStore.create(work / "run", build_manifest(task, corpus, f"k{k}"))
    store.ingest(read_rows(corpus, id_column="id", text_column="text", gold_column="label"), members=["default"])
    cache = Cache(work / "cache.sqlite")
    backend = Counting(OpenAIBackend(base_url=base_url, api_key="x", timeout=600))
    t0 = time.perf_counter()
    try:
        await label_pending(task, store, cache, {"default": backend})
    finally:
        cache.close()
    seconds = time.perf_counter() - t0
    gold = store.gold_labels()
    rows = list(store.iter_results(member="default"))
    store.close()
    await backend.inner.aclose()
    labeled = [r for r in rows if r["status"] == "labeled"]
    mlb = MultiLabelBinarizer(classes=list(task.label_names))
    y_true = mlb.fit_transform([gold[r["item_id"]].split(";") for r in rows])
    pred = [json.loads(r["label"]) if r["label"] else [] for r in rows]
    y_pred = mlb.transform(pred)
    # the failure a small model shows with several items: the example block's answers, copied by position
    copied = [sorted(p) == sorted(EXAMPLES[n % k][1]) for n, p in enumerate(pred)] if k > 1 else []
    return {
        "k": k,
        "items": len(rows),
        "labeled": len(labeled),
        "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "micro_f1_all_four": float(f1_score(y_true, mlb.transform([task.label_names] * len(rows)), average="micro")),
        "copied_example_answer": sum(copied) / len(copied) if copied else 0.0,
        "distinct_answers": len({tuple(sorted(p)) for p in pred}),
        "items_per_s": len(rows) / seconds,
        "prompt_tokens_per_item": backend.prompt_tokens / max(len(rows), 1),
        "multi_requests": backend.multi,
        "single_requests": backend.single,
        "seconds": seconds,
    }


async def main(ks: list[int], items: int, repeat: int, out: Path | None) -> None:
    base = load_config(ROOT / "prompts" / "entity_kinds" / "task.toml")
    src = base.input_path
    assert src is not None
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-kinds-") as tmp:
        rows = list(read_rows(src, id_column="id", text_column="text", gold_column="label"))[:items]
        corpus = Path(tmp) / "items.csv"
        import csv

        with corpus.open("w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["id", "text", "label"])
            w.writerows([(r.item.id, r.item.text, r.gold) for r in rows])
        async with LocalServer("gemma3-270m") as base_url:
            for rep in range(repeat):
                for k in ks:  # alternated, so a change in the machine's load touches both
                    work = Path(tmp) / f"k{k}-{rep}"
                    work.mkdir()
                    r = await one_k(base, base_url, k, corpus, work)
                    results.append(r)
                    print(
                        f"K={k}: micro-F1 {r['micro_f1']:.3f}  labeled {r['labeled']}/{r['items']}  "
                        f"{r['items_per_s']:.2f} items/s  prompt tokens/item {r['prompt_tokens_per_item']:.0f}  "
                        f"requests {r['multi_requests']} K-item + {r['single_requests']} one-item (re-asks)  "
                        f"{r['distinct_answers']} distinct answers; naming all four kinds: micro-F1 "
                        f"{r['micro_f1_all_four']:.3f}"
                        + (f"; the example block's answer at its position: {r['copied_example_answer']:.0%}"
                           if k > 1 else ""),
                        flush=True,
                    )
                    if out is not None:
                        out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    ones = [r for r in results if r["k"] == 1]
    for k in ks:
        if k == 1 or not ones:
            continue
        these = [r for r in results if r["k"] == k]
        speed = sum(r["items_per_s"] for r in these) / sum(r["items_per_s"] for r in ones)
        fewer = ones[-1]["prompt_tokens_per_item"] / these[-1]["prompt_tokens_per_item"]
        print(f"K={k} vs K=1: {speed:.2f}x the items/s, micro-F1 {these[-1]['micro_f1']:.3f} vs "
              f"{ones[-1]['micro_f1']:.3f}, {fewer:.1f}x fewer prompt tokens per item "
              "(the machine is shared: compare the ratio, not the rates)")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, nargs="+", default=[1, 4])
    p.add_argument("--items", type=int, default=24)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--out", type=Path, help="also write the figures as JSON here")
    a = p.parse_args()
    asyncio.run(main(a.k, a.items, a.repeat, a.out))
