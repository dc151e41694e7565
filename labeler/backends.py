"""The backend protocol and its one implementation: any OpenAI-compatible chat-completions server.

A backend has one method, `complete(request) -> Completion`. SDK errors are translated here, once,
into RetryableError (429 with its retry-after, 5xx, timeouts, dropped connections, garbled bodies)
or FatalError (everything that retrying will not fix). The SDK's own retries are off
(`max_retries=0`): `labeler.retry` is the only retry layer.
"""

from __future__ import annotations

import json
from typing import Any, Protocol, runtime_checkable

import openai

from labeler.errors import BackendError, FatalError, RetryableError
from labeler.types import Choice, Completion, Request, TokenLogprob


@runtime_checkable
class Backend(Protocol):
    async def complete(self, request: Request) -> Completion: ...

    async def aclose(self) -> None: ...


def _retry_after(headers: Any) -> float | None:
    if headers is None:
        return None
    for name in ("retry-after-ms", "retry-after"):
        value = headers.get(name)
        if value is None:
            continue
        try:
            secs = float(value)
        except ValueError:
            return None  # an HTTP date: fall back to our own backoff
        return secs / 1000.0 if name.endswith("-ms") else secs
    return None


_FIXES = {
    401: "check the API key in the environment variable named by model.api_key_env",
    403: "the key has no access to this model; check the account or model name",
    404: "check model.model and model.base_url (the server does not know this model or path)",
    400: "the server rejected the request; if it does not support structured output, set model.profile = 'plain'",
    422: "the server rejected the request; if it does not support structured output, set model.profile = 'plain'",
}


def translate_error(exc: BaseException) -> BackendError:
    """Map an exception from the openai SDK (or the transport under it) to our tree."""
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return RetryableError("request timed out")
    if isinstance(exc, openai.APIConnectionError):
        return RetryableError(f"connection failed: {exc.__cause__ or exc}")
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
        return FatalError(f"server answered {status}: {_short(exc.message)}; {fix}", status=status, request_id=rid)
    if isinstance(exc, openai.APIResponseValidationError | json.JSONDecodeError | ValueError | KeyError):
        return RetryableError(f"garbled response: {_short(str(exc))}")
    if isinstance(exc, openai.APIError):
        return RetryableError(f"API error: {_short(str(exc))}")
    return RetryableError(f"{type(exc).__name__}: {_short(str(exc))}")


def _short(s: str, n: int = 200) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


def _logprobs(choice: Any) -> tuple[TokenLogprob, ...] | None:
    lp = getattr(choice, "logprobs", None)
    content = getattr(lp, "content", None) if lp is not None else None
    if not content:
        return None
    out = []
    for t in content:
        top = tuple((str(a.token), float(a.logprob)) for a in (t.top_logprobs or []))
        out.append(TokenLogprob(str(t.token), float(t.logprob), top))
    return tuple(out)


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
        kwargs: dict[str, Any] = {"base_url": base_url, "api_key": api_key, "timeout": timeout, "max_retries": 0}
        if http_client is not None:
            kwargs["http_client"] = http_client
        self.client = openai.AsyncOpenAI(**kwargs)

    async def complete(self, request: Request) -> Completion:
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if request.n != 1:
            kwargs["n"] = request.n
        if request.logprobs:
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = request.top_logprobs
        if request.response_format is not None:
            kwargs["response_format"] = dict(request.response_format)
        if request.stop:
            kwargs["stop"] = list(request.stop)
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if request.grammar is not None:
            kwargs["extra_body"] = {"grammar": request.grammar}
        try:
            resp = await self.client.chat.completions.create(**kwargs)
            if not resp.choices:
                raise RetryableError("response had no choices")
            choices = tuple(
                Choice(text=c.message.content or "", logprobs=_logprobs(c), finish_reason=c.finish_reason)
                for c in resp.choices
            )
        except Exception as exc:
            raise translate_error(exc) from exc
        usage = resp.usage
        return Completion(
            choices=choices,
            input_tokens=int(usage.prompt_tokens) if usage else 0,
            output_tokens=int(usage.completion_tokens) if usage else 0,
            model=resp.model or request.model,
            request_id=getattr(resp, "_request_id", None),
        )

    async def aclose(self) -> None:
        await self.client.close()
