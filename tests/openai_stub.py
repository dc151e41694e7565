"""A scripted OpenAI-compatible server on 127.0.0.1, for integration tests, crash tests and benchmarks.

    POST /v1/chat/completions   answers like OpenAI (choices, logprobs.content[*].top_logprobs, usage)
    GET  /health                {"status": "ok"}

The answer is a pure function of the prompt: the first user message (the item text) carries
`id=<key>` and `topic=<label>`, and the stub answers `{"label": "<label>"}`; `corpus_text` writes such
texts. A fault plan scripts what happens to the k-th request for a key (see FAULTS), so a test knows
every right answer and every fault in advance. Every request is recorded (key, messages, n, time,
what was done), in memory and, with `log_path`, as one JSON line each.

In a test:        with StubServer(plan={"i3": ["429", "ok"]}) as stub: ... stub.base_url ...
In its own process: python tests/openai_stub.py --port 0 --latency 0.02 --log requests.jsonl
                    (prints "listening on http://127.0.0.1:PORT/v1" once it accepts connections)
"""

from __future__ import annotations

import argparse
import json
import math
import re
import signal
import socket
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

FAULTS = {
    "ok": "answer normally",
    "429": "429 with a retry-after header (StubServer.retry_after seconds)",
    "500": "500 with an error body",
    "503": "503 with an error body",
    "401": "401 invalid API key",
    "400": "400: response_format is not supported (a server without structured output)",
    "400echo": "400 whose message echoes the request's Authorization header (a leaky proxy)",
    "500echo": "500 whose message echoes the request's Authorization header",
    "slow": "answer normally, but only after StubServer.slow_seconds (past the client's timeout)",
    "drop": "close the connection without sending a response",
    "malformed": "200 with a body that is not JSON",
    "badlabel": 'answer {"label": "weather"}: a label that is not in the set',
}
OUT_OF_SET = "weather"

_KEY = re.compile(r"\bid=(\S+)")
_TOPIC = re.compile(r"\btopic=(\w+)")


def corpus_text(key: str, topic: str, filler: str = "") -> str:
    """An item text the stub knows the answer to."""
    return f"id={key} topic={topic}. {filler}".strip()


def first_user(messages: Sequence[Mapping[str, Any]]) -> str:
    return next((str(m.get("content", "")) for m in messages if m.get("role") == "user"), "")


def key_of(messages: Sequence[Mapping[str, Any]]) -> str:
    text = first_user(messages)
    m = _KEY.search(text)
    return m.group(1) if m else text[:80]


def answer_of(messages: Sequence[Mapping[str, Any]]) -> str:
    m = _TOPIC.search(first_user(messages))
    return m.group(1) if m else "unknown"


@dataclass(frozen=True)
class Seen:
    """One request as received: the item key, its messages, n, when, and what the stub did."""

    key: str
    messages: tuple[tuple[str, str], ...]
    n: int
    t: float
    action: str

    @property
    def is_reask(self) -> bool:
        return sum(role == "user" for role, _ in self.messages) > 1


def _label_set(body: Mapping[str, Any]) -> list[str]:
    try:
        return list(body["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"])
    except (KeyError, TypeError):
        return []


def _wants_confidence(body: Mapping[str, Any]) -> bool:
    try:
        return "confidence" in body["response_format"]["json_schema"]["schema"]["properties"]
    except (KeyError, TypeError):
        return False


def _tokens(label: str, confidence: float | None) -> list[str]:
    """The answer text split the way a BPE tokenizer roughly would; the label is one token."""
    toks = ['{"', "label", '":', ' "', label, '"']
    if confidence is not None:
        toks += [", ", '"', "confidence", '":', " ", f"{confidence:g}"]
    return [*toks, "}"]


def _logprobs(toks: list[str], label: str, labels: list[str], p: float, top: int) -> dict[str, Any]:
    """OpenAI's logprobs.content: certain tokens everywhere except the label, which has probability p
    and the rest spread evenly over the other labels (as many as `top` allows)."""
    others = [x for x in labels if x != label][: max(top - 1, 0)]
    content = []
    for tok in toks:
        if tok == label:
            rest = (1.0 - p) / len(others) if others else 0.0
            alts = [(label, math.log(p))] + [(o, math.log(rest)) for o in others if rest > 0]
        else:
            alts = [(tok, 0.0)]
        content.append(
            {
                "token": tok,
                "logprob": alts[0][1],
                "bytes": list(tok.encode()),
                "top_logprobs": [{"token": a, "logprob": lp, "bytes": list(a.encode())} for a, lp in alts[:top]],
            }
        )
    return {"content": content}


class Served:
    """A stub's HTTP life: `serve(handler, name)` binds 127.0.0.1:`self.port` (0: any free port) with a
    subclass of `handler` that knows this stub as `server_stub`; start/stop run it in a daemon thread, and
    the stub is its own context manager."""

    port: int
    httpd: StubHTTPServer
    _thread: threading.Thread | None

    def serve(self, handler: type[StubHandler], name: str) -> None:
        stub = self

        class Handler(handler):  # type: ignore[valid-type,misc]
            server_stub = stub

        self.httpd = StubHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.httpd.server_address[1]
        self._thread, self._name = None, name

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> Self:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name=self._name, daemon=True)
        self._thread.start()
        return self

    def close_http(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def stop(self) -> None:
        self.close_http()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def run_until_signalled(self) -> None:
        """Serve in the foreground (as a process of its own) until SIGTERM or SIGINT; says where first."""
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        with self:
            print(f"listening on {self.base_url}", flush=True)
            stop.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


@dataclass
class StubServer(Served):
    """The server in a background thread. `plan[key]` lists the faults of that key's 1st, 2nd, ...
    requests ("ok" or a key of FAULTS); later requests are answered normally. `default` applies to
    every request not scripted by the plan."""

    plan: Mapping[str, Sequence[str]] = field(default_factory=dict)
    default: str = "ok"
    latency: float = 0.0
    retry_after: float = 0.3
    slow_seconds: float = 2.0
    label_prob: float = 0.9
    log_path: Path | None = None
    port: int = 0
    # a rate-limit storm: 429 to every request for `storm_seconds` from the first request (inf: forever),
    # with `retry-after: storm_retry_after` (None: no header), then the plan as usual
    storm_seconds: float = 0.0
    storm_retry_after: float | None = 1.0
    storm_start: float | None = field(default=None, init=False)
    seen: list[Seen] = field(default_factory=list, init=False)
    _counts: dict[str, int] = field(default_factory=lambda: defaultdict(int), init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        bad = {f for faults in self.plan.values() for f in faults} | {self.default}
        bad -= set(FAULTS)
        if bad:
            raise ValueError(f"unknown fault(s) {sorted(bad)}; use {', '.join(FAULTS)}")
        self._log = self.log_path.open("a", encoding="utf-8") if self.log_path else None
        self.serve(_Handler, "openai-stub")

    def stop(self) -> None:
        super().stop()
        if self._log is not None:
            self._log.close()

    # --- what tests read ---------------------------------------------------------------------
    def requests_for(self, key: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.key == key]

    def request_counts(self) -> dict[str, int]:
        with self._lock:
            counts: dict[str, int] = defaultdict(int)
            for s in self.seen:
                counts[s.key] += 1
            return dict(counts)

    # --- what the handler calls --------------------------------------------------------------
    def decide(self, body: Mapping[str, Any]) -> tuple[str, Seen]:
        messages = body.get("messages") or []
        key = key_of(messages)
        with self._lock:
            k = self._counts[key]
            self._counts[key] = k + 1
            script = self.plan.get(key)
            action = script[k] if script is not None and k < len(script) else self.default
            now = time.monotonic()
            self.storm_start = now if self.storm_start is None else self.storm_start
            if now - self.storm_start < self.storm_seconds:
                action = "storm"
            seen = Seen(
                key=key,
                messages=tuple((str(m.get("role")), str(m.get("content"))) for m in messages),
                n=int(body.get("n") or 1),
                t=time.monotonic(),
                action=action,
            )
            self.seen.append(seen)
            if self._log is not None:
                self._log.write(json.dumps({"key": key, "n": seen.n, "action": action, "reask": seen.is_reask}) + "\n")
                self._log.flush()
        return action, seen

    def completion(self, body: Mapping[str, Any], *, bad_label: bool) -> dict[str, Any]:
        messages = body.get("messages") or []
        label = OUT_OF_SET if bad_label else answer_of(messages)
        labels = _label_set(body) or [label]
        confidence = self.label_prob if _wants_confidence(body) else None
        toks = _tokens(label, confidence)
        text = "".join(toks)
        n = int(body.get("n") or 1)
        choice: dict[str, Any] = {"finish_reason": "stop", "message": {"role": "assistant", "content": text}}
        if body.get("logprobs"):
            top = int(body.get("top_logprobs") or 0)
            choice["logprobs"] = _logprobs(toks, label, labels, self.label_prob, top)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        return {
            "id": f"chatcmpl-{threading.get_ident()}-{time.monotonic_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model", "stub")),
            "choices": [dict(choice, index=i) for i in range(n)],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(toks) * n,
                "total_tokens": prompt_tokens + len(toks) * n,
            },
        }


class StubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that hung up is no error
            super().handle_error(request, client_address)


class StubHandler(BaseHTTPRequestHandler):
    """What the stubs' handlers share: keep-alive, no logging, and sending a body or an OpenAI-style error."""

    protocol_version = "HTTP/1.1"  # keep-alive, as a real server
    disable_nagle_algorithm = True  # else headers and body as two segments meet delayed ACKs: +40 ms

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(
        self, status: int, payload: bytes, headers: Mapping[str, str] | None = None, ctype: str = "application/json"
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (timeout): nothing to do

    def _error(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        body = {"error": {"message": message, "type": "stub_error", "code": status}}
        self._send(status, json.dumps(body).encode(), headers)


class _Handler(StubHandler):
    server_stub: StubServer

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/health", "/v1/health"):
            self._send(200, b'{"status": "ok"}')
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        stub = self.server_stub
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._error(404, f"no route {self.path}")
            return
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            self._error(400, "request body is not JSON")
            return
        action, _ = stub.decide(body)
        if stub.latency > 0:
            time.sleep(stub.latency)
        if action == "429":
            self._error(429, "rate limited", {"retry-after": f"{stub.retry_after:g}"})
        elif action == "storm":
            ra = stub.storm_retry_after
            self._error(429, "rate limited (storm)", {} if ra is None else {"retry-after": f"{ra:g}"})
        elif action in ("500", "503"):
            self._error(int(action), "the server had an error")
        elif action == "401":
            self._error(401, "Incorrect API key provided")
        elif action == "400":
            self._error(400, "response_format is not supported by this server")
        elif action in ("400echo", "500echo"):
            auth = self.headers.get("Authorization", "")
            self._error(int(action[:3]), f"invalid request (headers: Authorization: {auth})")
        elif action == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        elif action == "malformed":
            self._send(200, b'{"id": "chatcmpl-x", "choices": [{"message": ')
        else:
            if action == "slow":
                time.sleep(stub.slow_seconds)
            payload = stub.completion(body, bad_label=action == "badlabel")
            self._send(200, json.dumps(payload).encode())


def write_task(
    directory: Path,
    *,
    base_url: str,
    items: Iterable[tuple[str, str]],
    labels: Sequence[str] = ("business", "politics", "sport", "tech"),
    model: str = "",
    retry: str = "",
    confidence: str = "",
) -> Path:
    """A task config (TOML), its template and a CSV corpus of (key, topic) items for the stub, in
    `directory`. `model`, `retry` and `confidence` are extra TOML lines for those tables."""
    import csv

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "chat.j2").write_text(
        "[[system]]\nLabel the topic. Labels: {{ label_names | join(', ') }}. Answer with JSON only.\n"
        "[[user]]\n{{ text }}\n",
        encoding="utf-8",
    )
    with (directory / "items.csv").open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text"])
        for key, topic in items:
            w.writerow([key, corpus_text(key, topic, "Some words about it.")])
    labels_toml = "".join(f'[[labels]]\nname = "{lab}"\ndescription = "about {lab}"\n\n' for lab in labels)
    config = directory / "task.toml"
    config.write_text(
        f'[task]\nname = "stubtask"\ntemplate = "chat.j2"\n\n{labels_toml}'
        '[input]\npath = "items.csv"\n\n'
        f'[model]\nbase_url = "{base_url}"\nmodel = "stub-model"\nprofile = "openai"\napi_key_env = "STUB_API_KEY"\n'
        f"{model}\n\n[retry]\n{retry}\n\n[confidence]\n{confidence}\n",
        encoding="utf-8",
    )
    return config


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="A scripted OpenAI-compatible server on 127.0.0.1.")
    p.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    p.add_argument("--latency", type=float, default=0.0, help="seconds to wait before each answer")
    p.add_argument("--log", type=Path, help="append one JSON line per request to this file")
    p.add_argument("--plan", type=Path, help='JSON file {"key": ["429", "ok", ...]} (see FAULTS)')
    p.add_argument("--default", default="ok", choices=sorted(FAULTS))
    args = p.parse_args(argv)
    plan = json.loads(args.plan.read_text(encoding="utf-8")) if args.plan else {}
    stub = StubServer(plan=plan, default=args.default, latency=args.latency, log_path=args.log, port=args.port)
    stub.run_until_signalled()
    return 0


if __name__ == "__main__":
    sys.exit(main())
