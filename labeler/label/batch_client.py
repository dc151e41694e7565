"""The files and batches endpoints of an OpenAI-compatible server, for labeler.label.batch_api.

Every call goes through the one retry layer (labeler.label.retry) and every SDK error through the one
translation (backends.translate_error). `upload` and `submit` look first for what an earlier, interrupted
attempt may have made (a file of the same name and size; a batch of the same input file), so neither is
ever done twice.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from labeler.config import Endpoint, RetryPolicy
from labeler.label.backends import TRANSLATED, translate_error
from labeler.label.retry import call_with_retry

T = TypeVar("T")


class BatchClient:
    """The files and batches endpoints of one server, through the retry layer and the error translation."""

    def __init__(self, ep: Endpoint, retry: RetryPolicy, *, http_client: Any = None) -> None:
        import openai

        self.secrets = (ep.api_key(),)
        kwargs: dict[str, Any] = {"base_url": ep.base_url, "api_key": ep.api_key(), "timeout": max(ep.timeout, 300)}
        if http_client is not None:
            kwargs["http_client"] = http_client
        self.client = openai.AsyncOpenAI(max_retries=0, **kwargs)
        self.retry = retry

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        async def once() -> T:
            try:
                return await fn()
            except TRANSLATED as exc:
                raise translate_error(exc, secrets=self.secrets) from exc

        result, _ = await call_with_retry(once, self.retry)
        return result

    async def _all(self, first: Callable[[], Awaitable[Any]]) -> list[dict[str, Any]]:
        page = await self._call(first)
        out = [x.model_dump() for x in page.data]
        while page.has_next_page():
            page = await self._call(page.get_next_page)
            out += [x.model_dump() for x in page.data]
        return out

    async def find_file(self, filename: str, size: int) -> str | None:
        files = await self._all(lambda: self.client.files.list(purpose="batch"))
        return next((f["id"] for f in files if f.get("filename") == filename and f.get("bytes") == size), None)

    async def upload(self, path: Path, filename: str) -> str:
        """The file's id on the server: uploaded now, or found there from an earlier upload."""
        size = path.stat().st_size

        async def once() -> str:
            found = await self.find_file(filename, size)
            if found is not None:
                return found
            with path.open("rb") as fh:
                f = await self.client.files.create(file=(filename, fh, "application/jsonl"), purpose="batch")
            return str(f.id)

        return await self._call(once)

    async def submit(self, file_id: str, window: str, metadata: dict[str, str]) -> dict[str, Any]:
        """The batch for an input file: created now, or found from an earlier create."""

        async def once() -> dict[str, Any]:
            found = await self.find_batch(file_id)
            if found is not None:
                return found
            created = await self.client.batches.create(
                input_file_id=file_id,
                endpoint="/v1/chat/completions",
                completion_window=window,  # type: ignore[arg-type]
                metadata=metadata,
            )
            return created.model_dump()

        return await self._call(once)

    async def find_batch(self, file_id: str) -> dict[str, Any] | None:
        """The batch made from an input file, among the account's batches, newest first."""
        page = await self._call(lambda: self.client.batches.list(limit=100))
        while True:
            for b in page.data:
                if b.input_file_id == file_id:
                    return dict(b.model_dump())
            if not page.has_next_page():
                return None
            page = await self._call(page.get_next_page)

    async def retrieve(self, batch_id: str) -> dict[str, Any]:
        return (await self._call(lambda: self.client.batches.retrieve(batch_id))).model_dump()

    async def cancel(self, batch_id: str) -> dict[str, Any]:
        return (await self._call(lambda: self.client.batches.cancel(batch_id))).model_dump()

    async def download(self, file_id: str, dest: Path) -> None:
        """Stream a file's content to `dest` (written whole, then renamed into place)."""
        tmp = dest.with_suffix(dest.suffix + ".tmp")

        async def once() -> None:
            async with self.client.files.with_streaming_response.content(file_id) as resp:
                with tmp.open("wb") as fh:
                    async for chunk in resp.iter_bytes():
                        fh.write(chunk)
            os.replace(tmp, dest)

        await self._call(once)

    async def aclose(self) -> None:
        await self.client.close()
