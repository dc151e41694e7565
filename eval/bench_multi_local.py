"""Multi-item prompts on the embedded model: prompt tokens per label and macro-F1 for K = 1, 5, 10, 20.

One llama-server (Gemma-3-270M, the bundled task tasks/news_topic.toml, its 300 BBC items) serves every
K in turn; each K labels the corpus through labeler's whole pipeline (store, cache, parsing, the re-ask
alone of items a multi-item answer misses) from an empty cache. Prompt tokens are the server's own
`usage.prompt_tokens` summed over every request (the re-asks included), divided by the items labeled.
A counting wrapper around the backend tells multi-item requests from the single-item re-asks.

    python eval/bench_multi_local.py                   # K = 1 5 10 20, all 300 items (minutes per K)
    python eval/bench_multi_local.py --k 1 5 --items 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from sklearn.metrics import accuracy_score, f1_score

from labeler.config import TaskConfig, load_config
from labeler.label.backends import OpenAIBackend
from labeler.label.local import LocalServer
from labeler.label.pipeline import build_manifest
from labeler.label.runner import label_pending
from labeler.store import Cache, RunStore
from labeler.types import Completion, Request

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Counting:
    """The backend, counting multi-item requests and single-item ones (re-asks) and their prompt tokens."""

    inner: OpenAIBackend
    multi: int = 0
    single: int = 0
    prompt_tokens: int = 0

    async def complete(self, request: Request) -> Completion:
        c = await self.inner.complete(request)
        fmt = request.response_format or {}
        is_multi = "\\n1." in (request.grammar or "") or fmt.get("json_schema", {}).get("name") == "multi_label_answer"
        if is_multi:
            self.multi += 1
        else:
            self.single += 1
        self.prompt_tokens += c.input_tokens
        return c

    async def aclose(self) -> None:
        pass


def task_for(base: TaskConfig, base_url: str, k: int, items: int, work: Path) -> tuple[TaskConfig, Path]:
    """The bundled task at K items a request, on the running server, over the first `items` rows."""
    src = base.input_path
    assert src is not None
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
    corpus = work / "items.csv"
    corpus.write_text("".join(lines[: items + 1]), encoding="utf-8")  # BBC leads have no embedded newlines
    member = base.primary
    ep = replace(member.endpoint, base_url=base_url, profile="gemma3-270m", items_per_request=k)
    return replace(base, members=(replace(member, endpoint=ep),), input_path=corpus), corpus


async def one_k(base: TaskConfig, base_url: str, k: int, items: int, work: Path) -> dict[str, float]:
    task, corpus = task_for(base, base_url, k, items, work)
    from labeler.inputs import read_rows

    store = RunStore.create(work / f"run-k{k}", build_manifest(task, corpus, f"k{k}"))
    store.ingest(read_rows(corpus, id_column="id", text_column="text", gold_column="label"), members=["default"])
    cache = Cache(work / f"cache-k{k}.sqlite")
    backend = Counting(OpenAIBackend(base_url=base_url, api_key="x", timeout=600))
    t0 = time.perf_counter()
    try:
        await label_pending(task, store, cache, {"default": backend})
    finally:
        cache.close()
    seconds = time.perf_counter() - t0
    gold = store.gold_labels()
    rows = list(store.iter_results(member="default"))
    labeled = [r for r in rows if r["status"] == "labeled"]
    y_true = [gold[r["item_id"]] for r in rows]
    y_pred = [r["label"] or "none" for r in rows]
    labels = sorted(set(gold.values()))
    store.close()
    await backend.inner.aclose()
    return {
        "k": k,
        "items": len(rows),
        "labeled": len(labeled),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "prompt_tokens_per_label": backend.prompt_tokens / max(len(labeled), 1),
        "multi_requests": backend.multi,
        "single_requests": backend.single,
        "labels_per_s": len(labeled) / seconds,
        "seconds": seconds,
    }


async def main(ks: list[int], items: int, out: Path | None) -> None:
    base = load_config(ROOT / "tasks" / "news_topic.toml")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-multi-") as tmp:
        async with LocalServer("gemma3-270m") as base_url:
            for k in ks:
                work = Path(tmp) / f"k{k}"
                work.mkdir()
                r = await one_k(base, base_url, k, items, work)
                results.append(r)
                print(
                    f"K={k:>2}: macro-F1 {r['macro_f1']:.3f}  accuracy {r['accuracy']:.3f}  "
                    f"prompt tokens/label {r['prompt_tokens_per_label']:7.1f}  labeled {r['labeled']}/{r['items']}  "
                    f"requests {r['multi_requests']} multi + {r['single_requests']} alone (re-asks)  "
                    f"{r['labels_per_s']:.2f} labels/s",
                    flush=True,
                )
                if out is not None:
                    out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    one = next((r for r in results if r["k"] == 1), None)
    if one is not None:
        for r in results:
            if r["k"] != 1:
                print(
                    f"K={r['k']:>2} vs K=1: {one['prompt_tokens_per_label'] / r['prompt_tokens_per_label']:.1f}x fewer "
                    f"prompt tokens per label, macro-F1 {100 * (r['macro_f1'] - one['macro_f1']):+.1f} points"
                )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, nargs="+", default=[1, 5, 10, 20])
    p.add_argument("--items", type=int, default=300)
    p.add_argument("--out", type=Path, help="also write the figures as JSON here")
    a = p.parse_args()
    asyncio.run(main(a.k, a.items, a.out))
