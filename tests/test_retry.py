"""The retry layer, the rate limiter, and the one place SDK errors are translated (including the real
OpenAIBackend over an in-process httpx2.MockTransport: no sockets)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx2
import openai
import pytest

from labeler.config import RetryPolicy
from labeler.errors import BackendError, FatalError, RetryableError
from labeler.label.backends import OpenAIBackend, translate_error
from labeler.label.retry import Limiter, TokenBucket, call_with_retry
from labeler.types import Message, Request, TokenLogprob

URL = "http://127.0.0.1:9/v1"


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record every asyncio.sleep and return at once (tenacity and the token bucket both sleep this way)."""
    recorded: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float, result: object = None) -> object:
        recorded.append(delay)
        await real_sleep(0)
        return result

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    return recorded


class Flaky:
    """Fails with the given exceptions in turn, then returns 'ok'."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


async def test_retryable_errors_are_retried_until_success(sleeps: list[float]) -> None:
    fn = Flaky(RetryableError("500"), RetryableError("timeout"))
    seen: list[int] = []
    result, attempts = await call_with_retry(
        fn, RetryPolicy(max_attempts=5, initial_wait=0.0), on_retry=lambda e, n: seen.append(n)
    )
    assert (result, attempts, fn.calls) == ("ok", 3, 3)
    assert seen == [1, 2]
    assert sleeps == [0.0, 0.0]


async def test_retryable_errors_give_up_at_max_attempts(sleeps: list[float]) -> None:
    fn = Flaky(*(RetryableError(f"fail {i}") for i in range(10)))
    with pytest.raises(RetryableError, match="fail 2"):
        await call_with_retry(fn, RetryPolicy(max_attempts=3, initial_wait=0.0))
    assert fn.calls == 3 and len(sleeps) == 2


async def test_fatal_and_other_errors_are_not_retried(sleeps: list[float]) -> None:
    fn = Flaky(FatalError("401", status=401))
    with pytest.raises(FatalError):
        await call_with_retry(fn, RetryPolicy(max_attempts=5, initial_wait=0.0))
    assert fn.calls == 1
    bug = Flaky(ZeroDivisionError())
    with pytest.raises(ZeroDivisionError):
        await call_with_retry(bug, RetryPolicy(max_attempts=5, initial_wait=0.0))
    assert bug.calls == 1 and sleeps == []


async def test_retry_after_is_honoured_and_capped(sleeps: list[float]) -> None:
    fn = Flaky(RetryableError("429", status=429, retry_after=3.0), RetryableError("429", retry_after=60.0))
    policy = RetryPolicy(max_attempts=5, initial_wait=0.0, max_wait=5.0, max_retry_after=10.0)
    _, attempts = await call_with_retry(fn, policy)
    assert attempts == 3
    assert sleeps == [3.0, 10.0]  # backoff is 0 here; retry-after wins, capped at max_retry_after


async def test_a_retry_after_longer_than_max_wait_is_waited_in_full() -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:  # injected: nothing sleeps for real
        waits.append(seconds)

    fn = Flaky(RetryableError("429", status=429, retry_after=45.0), RetryableError("429", retry_after=1000.0))
    policy = RetryPolicy()  # max_wait 30 s, max_retry_after 300 s
    assert (policy.max_wait, policy.max_retry_after) == (30.0, 300.0)
    _, attempts = await call_with_retry(fn, policy, sleep=sleep)
    assert attempts == 3
    assert waits[0] == 45.0  # not cut to max_wait's 30 s
    assert waits[1] == 300.0  # a server asking for 1000 s gets the documented cap


def test_retry_after_as_an_http_date() -> None:
    from email.utils import formatdate

    from labeler.label.backends import _retry_after

    now = 1_700_000_000.0
    assert _retry_after({"retry-after": formatdate(now + 45, usegmt=True)}, now=now) == 45.0
    assert _retry_after({"retry-after": formatdate(now + 45)}, now=now) == 45.0  # "-0000" zone
    assert _retry_after({"retry-after": formatdate(now - 60, usegmt=True)}, now=now) == 0.0  # past: now
    assert _retry_after({"retry-after": "soon"}, now=now) is None
    assert _retry_after({"retry-after": "-3"}, now=now) is None
    assert _retry_after({"retry-after": "12"}, now=now) == 12.0


async def test_an_http_date_retry_after_is_waited_over_the_real_backend() -> None:
    from email.utils import formatdate

    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    replies = [
        httpx2.Response(429, json={"error": {"message": "slow"}}, headers={"retry-after": formatdate(
            __import__("time").time() + 45, usegmt=True)}),
        httpx2.Response(200, json=_chat_body("tech")),
    ]  # fmt: skip
    backend = _backend(lambda r: replies.pop(0))
    completion, attempts = await call_with_retry(lambda: backend.complete(REQUEST), RetryPolicy(), sleep=sleep)
    await backend.aclose()
    assert attempts == 2 and completion.choices[0].text == "tech"
    [wait] = waits
    assert 42.0 <= wait <= 45.0  # the date has whole seconds, and a moment passed since it was written


async def test_backoff_is_jittered_exponential_and_capped(sleeps: list[float]) -> None:
    fn = Flaky(*(RetryableError("x") for _ in range(5)))
    await call_with_retry(fn, RetryPolicy(max_attempts=6, initial_wait=1.0, max_wait=4.0))
    assert len(sleeps) == 5
    for attempt, wait in enumerate(sleeps, 1):
        assert 0.0 <= wait <= min(4.0, 2.0 ** (attempt - 1))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """An injected clock that asyncio.sleep advances."""
    c = Clock()
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float, result: object = None) -> object:
        c.now += delay
        await real_sleep(0)
        return result

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    return c


async def test_token_bucket_waits_exactly_for_the_refill(clock: Clock) -> None:
    bucket = TokenBucket(60, clock=clock)  # 1 unit a second, up to 60 banked, full at the start
    await bucket.take(60)
    assert clock.now == 1000.0  # the banked minute goes at once
    await bucket.take(1)
    assert clock.now == pytest.approx(1001.0)
    await bucket.take(30)
    assert clock.now == pytest.approx(1031.0)
    clock.now += 10_000  # a long idle spell banks at most one minute
    await bucket.take(60)
    assert clock.now == pytest.approx(11031.0)
    await bucket.take(500)  # more than a minute's worth still goes, alone, after a full refill
    assert clock.now == pytest.approx(11091.0)


async def test_token_bucket_without_a_rate_never_waits(clock: Clock) -> None:
    bucket = TokenBucket(0, clock=clock)
    for _ in range(100):
        await bucket.take(10_000)
    assert clock.now == 1000.0


async def test_limiter_bounds_requests_in_flight() -> None:
    limiter = Limiter(concurrency=3)
    in_flight = peak = 0

    async def job() -> None:
        nonlocal in_flight, peak
        async with limiter.slot(tokens=10):
            in_flight += 1
            peak = max(peak, in_flight)
            for _ in range(3):
                await asyncio.sleep(0)
            in_flight -= 1

    await asyncio.gather(*(job() for _ in range(12)))
    assert peak == 3 and in_flight == 0


# --- translating SDK errors --------------------------------------------------------------------
def _request() -> httpx2.Request:
    return httpx2.Request("POST", f"{URL}/chat/completions")


def _status(cls: type[openai.APIStatusError], status: int, headers: dict[str, str] | None = None) -> BaseException:
    body = {"error": {"message": f"upstream said {status}"}}
    response = httpx2.Response(status, headers=headers or {}, json=body, request=_request())
    return cls(f"Error code: {status}", response=response, body=body)


@pytest.mark.parametrize(
    ("exc", "status", "retry_after"),
    [
        (_status(openai.RateLimitError, 429, {"retry-after": "3", "x-request-id": "req_1"}), 429, 3.0),
        (_status(openai.RateLimitError, 429, {"retry-after-ms": "1500"}), 429, 1.5),
        (_status(openai.RateLimitError, 429, {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}), 429, 0.0),
        (_status(openai.InternalServerError, 500), 500, None),
        (_status(openai.InternalServerError, 503, {"retry-after": "1"}), 503, 1.0),
        (_status(openai.APIStatusError, 408), 408, None),
        (openai.APITimeoutError(request=_request()), None, None),
        (openai.APIConnectionError(request=_request()), None, None),
        (json.JSONDecodeError("Expecting value", "<html>", 0), None, None),
    ],
)
def test_transient_errors_are_retryable(exc: BaseException, status: int | None, retry_after: float | None) -> None:
    err = translate_error(exc)
    assert type(err) is RetryableError
    assert err.status == status
    assert err.retry_after == retry_after


def test_retryable_messages_say_what_happened() -> None:
    assert str(translate_error(openai.APITimeoutError(request=_request()))) == "request timed out"
    assert str(translate_error(openai.APIConnectionError(request=_request()))).startswith("connection failed")
    assert str(translate_error(json.JSONDecodeError("Expecting value", "x", 0))).startswith("garbled response")
    err = translate_error(_status(openai.RateLimitError, 429, {"x-request-id": "req_42"}))
    assert str(err) == "server answered 429" and err.request_id == "req_42"


@pytest.mark.parametrize(
    ("cls", "status", "fix"),
    [
        (openai.BadRequestError, 400, "model.profile = 'plain'"),
        (openai.AuthenticationError, 401, "model.api_key_env"),
        (openai.PermissionDeniedError, 403, "no access to this model"),
        (openai.NotFoundError, 404, "model.model and model.base_url"),
        (openai.UnprocessableEntityError, 422, "model.profile = 'plain'"),
    ],
)
def test_permanent_errors_are_fatal_and_name_the_fix(cls: type[openai.APIStatusError], status: int, fix: str) -> None:
    err = translate_error(_status(cls, status, {"x-request-id": "req_9"}))
    assert type(err) is FatalError
    assert err.status == status and err.request_id == "req_9"
    assert str(err).startswith(f"server answered {status}: ")
    assert fix in str(err)
    assert "\n" not in str(err)


def test_our_own_errors_pass_through() -> None:
    own = FatalError("x", status=401)
    assert translate_error(own) is own


@pytest.mark.parametrize("bug", [KeyError("messages"), RuntimeError("boom"), TypeError("x"), ValueError("y")])
def test_other_exceptions_are_bugs_and_are_not_translated(bug: Exception) -> None:
    with pytest.raises(type(bug)) as err:
        translate_error(bug)
    assert err.value is bug


# --- the real OpenAIBackend over a MockTransport ------------------------------------------------
Handler = Callable[[httpx2.Request], httpx2.Response]


def _backend(handler: Handler) -> OpenAIBackend:
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    return OpenAIBackend(base_url=URL, api_key="sk-test", timeout=5.0, http_client=client)


def _chat_body(text: str = '{"label": "sport"}', *, logprobs: bool = False, n: int = 1) -> dict:
    lp = None
    if logprobs:
        lp = {
            "content": [
                {
                    "token": "sport",
                    "logprob": -0.1,
                    "bytes": None,
                    "top_logprobs": [
                        {"token": "sport", "logprob": -0.1, "bytes": None},
                        {"token": "tech", "logprob": -2.5, "bytes": None},
                    ],
                }
            ]
        }
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "served-model",
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": lp}
            for i in range(n)
        ],
        "usage": {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49},
    }


REQUEST = Request(
    model="m",
    messages=(Message("system", "sys"), Message("user", "text")),
    max_tokens=16,
    temperature=0.0,
    logprobs=True,
    top_logprobs=5,
    grammar='root ::= "a"',
    stop=("\n",),
    seed=7,
)


async def test_openai_backend_sends_the_request_and_reads_the_completion() -> None:
    sent: list[dict] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        assert request.url.path == "/v1/chat/completions"
        assert request.headers["authorization"] == "Bearer sk-test"
        sent.append(json.loads(request.content))
        return httpx2.Response(200, json=_chat_body(logprobs=True), headers={"x-request-id": "req_7"})

    backend = _backend(handler)
    completion = await backend.complete(REQUEST)
    await backend.aclose()
    [body] = sent
    assert body["model"] == "m"
    assert body["messages"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "text"}]
    assert (body["max_tokens"], body["temperature"], body["seed"], body["stop"]) == (16, 0.0, 7, ["\n"])
    assert body["logprobs"] is True and body["top_logprobs"] == 5
    assert body["grammar"] == 'root ::= "a"'  # extra_body goes to the top level
    assert "n" not in body and "response_format" not in body
    [choice] = completion.choices
    assert choice.text == '{"label": "sport"}' and choice.finish_reason == "stop"
    assert choice.logprobs == (TokenLogprob("sport", -0.1, (("sport", -0.1), ("tech", -2.5))),)
    assert (completion.input_tokens, completion.output_tokens) == (42, 7)
    assert completion.model == "served-model" and completion.request_id == "req_7"


async def test_openai_backend_sends_n_and_response_format_when_set() -> None:
    sent: list[dict] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent.append(json.loads(request.content))
        return httpx2.Response(200, json=_chat_body("sport", n=3))

    backend = _backend(handler)
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    plain = Request(model="m", messages=(Message("user", "t"),), max_tokens=4, n=3, response_format=fmt)
    completion = await backend.complete(plain)
    await backend.aclose()
    assert sent[0]["n"] == 3 and sent[0]["response_format"] == fmt
    assert not {"logprobs", "top_logprobs", "seed", "stop", "grammar"} & set(sent[0])
    assert [c.text for c in completion.choices] == ["sport"] * 3
    assert completion.choices[0].logprobs is None


@pytest.mark.parametrize(
    ("respond", "kind", "status", "text"),
    [
        (lambda r: httpx2.Response(429, json={"error": {"message": "slow down"}}, headers={"retry-after": "2"}),
         RetryableError, 429, "server answered 429"),
        (lambda r: httpx2.Response(502, text="bad gateway"), RetryableError, 502, "server answered 502"),
        (lambda r: httpx2.Response(401, json={"error": {"message": "Incorrect API key"}}), FatalError, 401,
         "Incorrect API key"),
        (lambda r: httpx2.Response(404, json={"error": {"message": "model 'm' not found"}}), FatalError, 404,
         "model.model and model.base_url"),
        (lambda r: httpx2.Response(200, json={**_chat_body(), "choices": []}), RetryableError, None, "no choices"),
    ],
)  # fmt: skip
async def test_openai_backend_translates_http_errors(
    respond: Handler, kind: type[BackendError], status: int | None, text: str
) -> None:
    calls = 0

    def handler(request: httpx2.Request) -> httpx2.Response:
        nonlocal calls
        calls += 1
        return respond(request)

    backend = _backend(handler)
    with pytest.raises(BackendError) as err:
        await backend.complete(REQUEST)
    await backend.aclose()
    assert type(err.value) is kind and err.value.status == status
    assert text in str(err.value)
    assert calls == 1  # the SDK's own retries are off
    if status == 429:
        assert isinstance(err.value, RetryableError) and err.value.retry_after == 2.0


@pytest.mark.parametrize(
    ("raise_", "text"),
    [
        (httpx2.ConnectError("connection refused"), "connection failed"),
        (httpx2.ReadTimeout("read timed out"), "request timed out"),
        (httpx2.RemoteProtocolError("peer closed connection"), "connection failed"),
    ],
)
async def test_openai_backend_translates_transport_failures(raise_: Exception, text: str) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise raise_

    backend = _backend(handler)
    with pytest.raises(RetryableError, match=text):
        await backend.complete(REQUEST)
    await backend.aclose()


async def test_openai_backend_garbled_body_is_retryable() -> None:
    backend = _backend(lambda r: httpx2.Response(200, text="<html>oops</html>", headers={"content-type": "text/html"}))
    with pytest.raises(RetryableError):
        await backend.complete(REQUEST)
    await backend.aclose()


async def test_retry_over_the_real_backend(sleeps: list[float]) -> None:
    replies = [
        httpx2.Response(503, json={"error": {"message": "busy"}}),
        httpx2.Response(429, json={"error": {"message": "slow"}}, headers={"retry-after": "0.25"}),
        httpx2.Response(200, json=_chat_body("tech")),
    ]
    backend = _backend(lambda r: replies.pop(0))
    completion, attempts = await call_with_retry(
        lambda: backend.complete(REQUEST), RetryPolicy(max_attempts=4, initial_wait=0.0, max_wait=1.0)
    )
    await backend.aclose()
    assert attempts == 3 and completion.choices[0].text == "tech" and replies == []
    assert sleeps[:2] == [0.0, 0.25]


# --- bugs of ours are not server trouble -----------------------------------------------------
async def test_a_bug_in_our_request_builder_propagates_and_is_not_retried(
    monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    import labeler.label.backends as backends

    def broken(request: Request) -> dict:
        raise KeyError("top_logprobs")

    monkeypatch.setattr(backends, "request_body", broken)
    sent = 0

    def handler(request: httpx2.Request) -> httpx2.Response:
        nonlocal sent
        sent += 1
        return httpx2.Response(200, json=_chat_body())

    backend = _backend(handler)
    calls = 0

    async def once() -> object:
        nonlocal calls
        calls += 1
        return await backend.complete(REQUEST)

    with pytest.raises(KeyError, match="top_logprobs"):
        await call_with_retry(once, RetryPolicy(max_attempts=6, initial_wait=0.0))
    await backend.aclose()
    assert (calls, sent, sleeps) == (1, 0, [])


# --- redaction -----------------------------------------------------------------------------------
SECRET = "sk-proj-Zq8vR2mN5tK0wXyA"  # the configured key; the stub echoes it


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_an_echoed_api_key_is_redacted_from_fatal_errors(status: int) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        auth = request.headers["authorization"]
        message = f"bad request from {auth} (key {SECRET}); also saw sk-other0123456789"
        return httpx2.Response(status, json={"error": {"message": message}})

    client = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    backend = OpenAIBackend(base_url=URL, api_key=SECRET, timeout=5.0, http_client=client)
    with pytest.raises(FatalError) as err:
        await backend.complete(REQUEST)
    await backend.aclose()
    text = str(err.value)
    assert "[redacted]" in text
    assert SECRET not in text and "sk-other" not in text and "Zq8vR2mN5tK0wXyA" not in text
    assert err.value.status == status


async def test_an_api_key_in_a_transport_error_is_redacted() -> None:
    key = "custom-key-without-prefix-42"

    def handler(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError(f"proxy refused {request.url} with token {key}")

    client = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    backend = OpenAIBackend(base_url=URL, api_key=key, timeout=5.0, http_client=client)
    with pytest.raises(RetryableError) as err:
        await backend.complete(REQUEST)
    await backend.aclose()
    assert key not in str(err.value) and "[redacted]" in str(err.value)
