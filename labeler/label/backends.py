"""The backend protocol and its one implementation: any OpenAI-compatible chat-completions server.

A backend has one method, `complete(request) -> Completion`. SDK errors are translated here, once,
into RetryableError (429 with its retry-after, 5xx, timeouts, dropped connections, garbled bodies)
or FatalError (everything that retrying will not fix). Only the SDK's and the transport's exceptions
are translated: anything else is a bug in labeler and propagates unchanged. Every message is
redacted on the way (the configured API key, `Bearer ...` and `sk-...` tokens become `[redacted]`),
so what is stored in a run and printed on the terminal never carries a key a server echoed back.
The SDK's own retries are off (`max_retries=0`): `labeler.label.retry` is the only retry layer.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, Protocol, runtime_checkable

import httpx2
import openai

from labeler.errors import BackendError, FatalError, RetryableError
from labeler.safe_text import REDACTED, redact
from labeler.types import Choice, Completion, Request, TokenLogprob


@runtime_checkable
class Backend(Protocol):
    async def complete(self, request: Request) -> Completion: ...

    async def aclose(self) -> None: ...


def _retry_after(headers: Any, *, now: float | None = None) -> float | None:
    """Seconds the server asks us to wait: `retry-after-ms`, or `retry-after` as seconds or as an
    HTTP date (RFC 9110; a date in the past means now). None if absent or unreadable. The retry layer
    caps it (RetryPolicy.max_retry_after)."""
    if headers is None:
        return None
    for name in ("retry-after-ms", "retry-after"):
        value = headers.get(name)
        if value is None:
            continue
        try:
            secs = float(value)
        except ValueError:
            if name.endswith("-ms"):
                return None
            try:
                when = email.utils.parsedate_to_datetime(str(value))
            except (TypeError, ValueError, IndexError):
                return None
            if when.tzinfo is None:  # "-0000": UTC by RFC 5322
                when = when.replace(tzinfo=datetime.UTC)
            return max(0.0, when.timestamp() - (time.time() if now is None else now))
        if secs != secs or secs < 0:  # NaN or negative: ignore
            return None
        return secs / 1000.0 if name.endswith("-ms") else secs
    return None


__all__ = ["REDACTED", "redact"]  # re-exported: they live in labeler.safe_text


_FIXES = {
    401: "check the API key in the environment variable named by model.api_key_env",
    403: "the key has no access to this model; check the account or model name",
    404: "check model.model and model.base_url (the server does not know this model or path)",
    400: "the server rejected the request; if it does not support structured output, set model.profile = 'plain'",
    422: "the server rejected the request; if it does not support structured output, set model.profile = 'plain'",
}


# What translate_error translates: the SDK's errors, the transport's, and a body that is not JSON
# (or not text). Anything else raised while asking is a bug of ours and propagates.
TRANSLATED: tuple[type[BaseException], ...] = (
    BackendError,
    openai.APIError,
    httpx2.HTTPError,
    json.JSONDecodeError,
    UnicodeDecodeError,
)


def translate_error(exc: BaseException, *, secrets: Iterable[str] = ()) -> BackendError:
    """Map an exception from the openai SDK (or the transport under it) to our tree, its message
    redacted (`secrets`: the configured API key). Any other exception is re-raised unchanged: a bug
    must not become a retried request or a failed item."""
    if not isinstance(exc, TRANSLATED):
        raise exc
    if isinstance(exc, BackendError):
        return exc
    secrets = tuple(secrets)

    def clean(s: object) -> str:
        return _short(redact(str(s), secrets))

    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        return RetryableError("request timed out")
    if isinstance(exc, openai.APIConnectionError):
        return RetryableError(f"connection failed: {clean(exc.__cause__ or exc)}")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        rid = exc.request_id
        if status == 429 or status == 408 or status == 409 or status >= 500:
            return RetryableError(
                f"server answered {status}",
                status=status,
                request_id=rid,
                retry_after=_retry_after(exc.response.headers),
            )
        fix = _FIXES.get(status, "see the server's message")
        return FatalError(f"server answered {status}: {clean(exc.message)}; {fix}", status=status, request_id=rid)
    if isinstance(exc, openai.APIResponseValidationError | json.JSONDecodeError | UnicodeDecodeError):
        return RetryableError(f"garbled response: {clean(exc)}")
    if isinstance(exc, httpx2.HTTPError):
        return RetryableError(f"connection failed: {clean(exc)}")
    return RetryableError(f"API error: {clean(exc)}")


def _short(s: str, n: int = 200) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


def _logprobs(choice: dict[str, Any]) -> tuple[TokenLogprob, ...] | None:
    content = (choice.get("logprobs") or {}).get("content")
    if not content:
        return None
    return tuple(
        TokenLogprob(
            str(t["token"]),
            float(t["logprob"]),
            tuple((str(a["token"]), float(a["logprob"])) for a in t.get("top_logprobs") or ()),
        )
        for t in content
    )


def request_body(request: Request) -> dict[str, Any]:
    """The JSON body of a chat-completions request, in the wire format."""
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
    }
    if request.n != 1:
        body["n"] = request.n
    if request.logprobs:
        body["logprobs"] = True
        body["top_logprobs"] = request.top_logprobs
    if request.response_format is not None:
        body["response_format"] = request.response_format
    if request.stop:
        body["stop"] = list(request.stop)
    if request.seed is not None:
        body["seed"] = request.seed
    if request.grammar is not None:
        body["grammar"] = request.grammar  # llama.cpp's extension
    return body


def parse_response(data: Any, request: Request) -> Completion:
    """A Completion from a chat-completions response body; anything malformed is RetryableError."""
    try:
        choices = tuple(
            Choice(
                text=c["message"].get("content") or "",
                logprobs=_logprobs(c),
                finish_reason=c.get("finish_reason"),
            )
            for c in data["choices"]
        )
        usage = data.get("usage") or {}
        completion = Completion(
            choices=choices,
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            model=data.get("model") or request.model,
            request_id=data.get("id"),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RetryableError(f"garbled response: {type(exc).__name__} {_short(str(exc))}") from exc
    if not choices:
        raise RetryableError("response had no choices")
    return completion


class OpenAIBackend:
    """Chat completions through `openai.AsyncOpenAI` against any compatible base_url."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeout: float,
        http_client: Any = None,
    ) -> None:
        self._secrets = (api_key,)  # redacted from every error message
        kwargs: dict[str, Any] = {"base_url": base_url, "api_key": api_key, "timeout": timeout, "max_retries": 0}
        if http_client is not None:
            kwargs["http_client"] = http_client
        self.client = openai.AsyncOpenAI(**kwargs)

    async def complete(self, request: Request) -> Completion:
        # The client's documented raw `post`, not `chat.completions.create`: the body is already in the
        # wire format and the answer is read as JSON, which skips the SDK's per-request walk over typed
        # params and its pydantic models (together as much client CPU as the rest of labeler). Auth,
        # timeouts, connection handling and the status-error classes are still the SDK's.
        body = request_body(request)  # our own code: its errors are bugs, not server trouble
        try:
            resp = await self.client.post("/chat/completions", body=body, cast_to=httpx2.Response)
            data = resp.json()
        except TRANSLATED as exc:
            raise translate_error(exc, secrets=self._secrets) from exc
        completion = parse_response(data, request)
        rid = resp.headers.get("x-request-id")
        return completion if rid is None else replace(completion, request_id=rid)

    async def aclose(self) -> None:
        await self.client.close()
