"""A local OpenAI-compatible server for labeling at scale: chat completions (one item or K items a request),
the files and batches endpoints of the Batch API, a rate limit, latency, and a switch that kills it.

    POST /v1/chat/completions        like tests/openai_stub.py: an item text `id=<key> topic=<label>` is
                                     answered with its topic; a multi-item request (response_format
                                     "multi_label_answer", or a grammar) gets one answer per item id
    POST /v1/files                   multipart upload (purpose, file) -> file object
    GET  /v1/files[/{id}[/content]]  list (?purpose=), retrieve, content
    POST /v1/batches                 {input_file_id, endpoint, completion_window, metadata} -> batch
    GET  /v1/batches[/{id}]          list (newest first), retrieve
    POST /v1/batches/{id}/cancel     cancelling, then cancelled (answered requests kept in the output)

A batch is processed in a background thread: validating -> in_progress -> (each line answered by the chat
logic) -> finalizing -> completed, with an output file and, for `fail_ids` custom ids, an error file. While
`hold` is set a batch stays in_progress. Everything is counted (uploads, batches created, each custom_id
answered, chat requests per item key), so a test can check that nothing was submitted twice.

`rate` (requests/s, a token bucket of `burst`) answers 429 past it; `dead = True` drops every request and
refuses new connections. In its own process: python tests/batch_stub.py --port 0 --latency 0.2
"""

from __future__ import annotations

import argparse
import contextlib
import email.parser
import email.policy
import json
import math
import re
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

from openai_stub import Served, StubHandler

_TOPIC = re.compile(r"\btopic=(\w+)")
_KEY = re.compile(r"\bid=(\S+)")
_MULTI_LINE = re.compile(r'^\{"id": .*\}$', re.MULTILINE)
_GRAMMAR_LABELS = re.compile(r"^label ::= (.*)$", re.MULTILINE)


def _user(messages: Sequence[Mapping[str, Any]]) -> str:
    return "\n".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")


def _labels(body: Mapping[str, Any]) -> list[str]:
    try:
        schema = body["response_format"]["json_schema"]["schema"]["properties"]
        if "answers" in schema:
            return list(schema["answers"]["items"]["properties"]["label"]["enum"])
        return list(schema["label"]["enum"])
    except (KeyError, TypeError):
        pass
    m = _GRAMMAR_LABELS.search(str(body.get("grammar") or ""))
    return [json.loads(x) for x in m.group(1).split(" | ")] if m else []


def _is_multi(body: Mapping[str, Any]) -> bool:
    try:
        return bool(body["response_format"]["json_schema"]["name"] in _MULTI_NAMES)
    except (KeyError, TypeError):
        return '"answers' in str(body.get("grammar") or "")


_MULTI_NAMES = ("multi_label_answer", "labels_multi_answer", "spans_multi_answer")
_TOPICS = re.compile(r"\btopics=(\S*)")
_SPAN = re.compile(r"\bspan=(\S+?)/(\w+)")


def _kind(body: Mapping[str, Any]) -> str:
    """What the request asks: "label" (single), "labels" (multi_label) or "spans" (the task types)."""
    try:
        name = str(body["response_format"]["json_schema"]["name"])
    except (KeyError, TypeError):
        name = str(body.get("grammar") or "")
    return "labels" if "labels" in name and "multi_label" not in name else "spans" if "spans" in name else "label"


def _annotation(kind: str, text: str, bad: bool) -> dict[str, Any]:
    """A multi_label item `topics=a,b` is answered with those labels; a spans item with a quote of every
    `span=WORD/TYPE` it holds (the word alone, which the text also holds). `bad`: a type outside the set."""
    if kind == "labels":
        m = _TOPICS.search(text)
        return {"labels": ["weather"] if bad else [t for t in (m.group(1) if m else "").split(",") if t]}
    return {"spans": [{"text": w, "type": "weather" if bad else t} for w, t in _SPAN.findall(text)]}


def _lp(token: str, p: float | None, label: str, labels: list[str], top: int) -> dict[str, Any]:
    if p is None or token != label:
        alts = [(token, 0.0)]
    else:
        others = [x for x in labels if x != label][: max(top - 1, 0)]
        rest = (1.0 - p) / len(others) if others else 0.0
        alts = [(label, math.log(p))] + [(o, math.log(rest)) for o in others if rest > 0]
    return {
        "token": token,
        "logprob": alts[0][1],
        "top_logprobs": [{"token": a, "logprob": lp} for a, lp in alts[:top]],
    }


@dataclass
class ScaleStub(Served):
    """The server in a background thread (`with ScaleStub() as s: ... s.base_url ...`)."""

    latency: float = 0.0
    rate: float = 0.0  # requests/s answered; more get 429 (0: no limit)
    burst: float = 1.0
    retry_after: float = 0.05
    label_prob: float = 0.9
    drop_ids: frozenset[str] = frozenset()  # item keys a multi-item answer leaves out
    bad_ids: frozenset[str] = frozenset()  # item keys a multi-item answer gives an out-of-set label
    fail_ids: frozenset[str] = frozenset()  # batch custom ids that fail (500 in the error file)
    batch_line_seconds: float = 0.0
    port: int = 0
    dead: bool = False
    hold: threading.Event = field(default_factory=threading.Event)  # set: batches stay in_progress
    chat: Counter[str] = field(default_factory=Counter, init=False)  # chat requests per item key
    online: Counter[str] = field(default_factory=Counter, init=False)  # of which over /v1/chat/completions
    answered: Counter[str] = field(default_factory=Counter, init=False)  # batch custom_id -> times answered
    uploads: int = field(default=0, init=False)
    created: int = field(default=0, init=False)
    throttled: int = field(default=0, init=False)
    ok_times: list[float] = field(default_factory=list, init=False)
    files: dict[str, dict[str, Any]] = field(default_factory=dict, init=False)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self._tokens, self._stamp = self.burst, time.monotonic()
        self.serve(_Handler, "scale-stub")

    def kill(self) -> None:
        """Die: drop every request from now on, and accept no new connection."""
        self.dead = True
        super().close_http()

    def close_http(self) -> None:
        self.hold.clear()
        if not self.dead:  # a killed stub has closed already
            super().close_http()

    # --- chat completions --------------------------------------------------------------------
    def admit(self) -> bool:
        """The token bucket: False means 429."""
        if self.rate <= 0:
            return True
        with self.lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            self.throttled += 1
            return False

    def annotate(self, kind: str, messages: Sequence[Mapping[str, Any]], online: bool) -> dict[str, Any]:
        """The answer of a multi_label or spans request, one item or K (drop_ids left out, bad_ids garbled)."""
        user = _user(messages)
        items = [json.loads(line) for line in _MULTI_LINE.findall(user)] or [{"id": None, "text": user}]
        out = []
        for it in items:
            key_m = _KEY.search(str(it["text"]))
            key = key_m.group(1) if key_m else str(it["text"])[:40]
            with self.lock:
                self.chat[key] += 1
                self.online[key] += online
            if it["id"] is not None and key in self.drop_ids:
                continue
            one = _annotation(kind, str(it["text"]), it["id"] is not None and key in self.bad_ids)
            out.append(one if it["id"] is None else {"id": it["id"], **one})
        return out[0] if items[0]["id"] is None else {"answers": out}

    def completion(self, body: Mapping[str, Any], *, online: bool = False) -> dict[str, Any]:
        messages = body.get("messages") or []
        labels = _labels(body)
        top = int(body.get("top_logprobs") or 0) if body.get("logprobs") else 0
        p = self.label_prob
        toks: list[tuple[str, str]] = []  # (token, the label it is, or "")
        kind = _kind(body)
        if kind != "label":  # multi_label, spans: the type's own object, per item id in a multi-item request
            toks = [(json.dumps(self.annotate(kind, messages, online)), "")]
        elif _is_multi(body):
            items = [json.loads(line) for line in _MULTI_LINE.findall(_user(messages))]
            if not items:  # a completion-style prompt: the items are numbered lines
                items = [
                    {"id": m.group(1), "text": m.group(2)}
                    for m in re.finditer(r'^(\d+)\. (".*")$', _user(messages), re.M)
                ]
            toks.append(('{"answers": [', ""))
            first = True
            for it in items:
                key_m, topic_m = _KEY.search(str(it["text"])), _TOPIC.search(str(it["text"]))
                key = key_m.group(1) if key_m else ""
                with self.lock:
                    self.chat[key] += 1
                    self.online[key] += online
                if key in self.drop_ids:
                    continue
                label = "weather" if key in self.bad_ids else (topic_m.group(1) if topic_m else "unknown")
                toks += [(("" if first else ", ") + '{"id": "' + str(it["id"]) + '", "label": "', ""), (label, label)]
                toks.append(('"}', ""))
                first = False
            toks.append(("]}", ""))
        else:
            text = _user(messages)
            key_m, topic_m = _KEY.search(text), _TOPIC.search(text)
            with self.lock:
                self.chat[key_m.group(1) if key_m else text[:40]] += 1
                self.online[key_m.group(1) if key_m else text[:40]] += online
            label = topic_m.group(1) if topic_m else "unknown"
            toks = [('{"label": "', ""), (label, label), ('"}', "")]
        content = "".join(t for t, _ in toks)
        choice: dict[str, Any] = {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": content},
        }
        if top:
            choice["logprobs"] = {"content": [_lp(t, p if lab else None, lab, labels or [lab], top) for t, lab in toks]}
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model", "stub")),
            "choices": [choice],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(toks),
                "total_tokens": prompt_tokens + len(toks),
            },
        }

    # --- files and batches -------------------------------------------------------------------
    def add_file(self, filename: str, purpose: str, data: bytes) -> dict[str, Any]:
        fid = f"file-{uuid.uuid4().hex[:16]}"
        obj = {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
               "filename": filename, "purpose": purpose, "status": "processed"}  # fmt: skip
        with self.lock:
            self.files[fid] = {**obj, "_data": data}
        return obj

    def create_batch(self, body: Mapping[str, Any]) -> dict[str, Any]:
        fid = str(body.get("input_file_id"))
        bid = f"batch_{uuid.uuid4().hex[:16]}"
        n = len([x for x in self.files[fid]["_data"].splitlines() if x.strip()])
        batch = {
            "id": bid, "object": "batch", "endpoint": body.get("endpoint"), "errors": None,
            "input_file_id": fid, "completion_window": body.get("completion_window"), "status": "validating",
            "output_file_id": None, "error_file_id": None, "created_at": int(time.time()),
            "in_progress_at": None, "completed_at": None, "cancelled_at": None,
            "request_counts": {"total": n, "completed": 0, "failed": 0}, "metadata": body.get("metadata"),
        }  # fmt: skip
        with self.lock:
            self.batches[bid] = batch
            self.created += 1
        threading.Thread(target=self._process, args=(bid,), daemon=True).start()
        return dict(batch)

    def _process(self, bid: str) -> None:
        batch = self.batches[bid]
        lines = [json.loads(x) for x in self.files[batch["input_file_id"]]["_data"].splitlines() if x.strip()]
        batch["status"], batch["in_progress_at"] = "in_progress", int(time.time())
        out: list[str] = []
        errors: list[str] = []
        for line in lines:
            while self.hold.is_set() and batch["status"] == "in_progress":
                time.sleep(0.02)
            if batch["status"] != "in_progress":  # cancelling
                break
            cid = str(line["custom_id"])
            with self.lock:
                self.answered[cid] += 1
            if cid in self.fail_ids:
                err = {"error": {"message": "the server had an error", "type": "server_error"}}
                resp = {"status_code": 500, "request_id": uuid.uuid4().hex, "body": err}
                errors.append(
                    json.dumps(
                        {"id": f"batch_req_{uuid.uuid4().hex[:8]}", "custom_id": cid, "response": resp, "error": None}
                    )
                )
                batch["request_counts"]["failed"] += 1
            else:
                resp = {"status_code": 200, "request_id": uuid.uuid4().hex, "body": self.completion(line["body"])}
                out.append(
                    json.dumps(
                        {"id": f"batch_req_{uuid.uuid4().hex[:8]}", "custom_id": cid, "response": resp, "error": None}
                    )
                )
                batch["request_counts"]["completed"] += 1
            if self.batch_line_seconds:
                time.sleep(self.batch_line_seconds)
        cancelled = batch["status"] == "cancelling"
        batch["status"] = "finalizing" if not cancelled else "cancelling"
        if out:
            batch["output_file_id"] = self.add_file(
                f"{bid}_output.jsonl", "batch_output", ("\n".join(out) + "\n").encode()
            )["id"]
        if errors:
            batch["error_file_id"] = self.add_file(
                f"{bid}_error.jsonl", "batch_output", ("\n".join(errors) + "\n").encode()
            )["id"]
        batch["status"] = "cancelled" if cancelled else "completed"
        batch["completed_at" if not cancelled else "cancelled_at"] = int(time.time())


class _Handler(StubHandler):
    server_stub: ScaleStub

    def _json(self, obj: Any, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode())

    def _dead(self) -> bool:
        if self.server_stub.dead:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return True
        return False

    def do_GET(self) -> None:
        if self._dead():
            return
        stub = self.server_stub
        url = urlparse(self.path)
        parts = [p for p in url.path.split("/") if p][1:]  # after "v1"
        query = parse_qs(url.query)
        if parts == ["files"]:
            purpose = query.get("purpose", [None])[0]
            data = [
                {k: v for k, v in f.items() if k != "_data"}
                for f in stub.files.values()
                if purpose in (None, f["purpose"])
            ]
            self._json({"object": "list", "data": data, "has_more": False})
        elif len(parts) == 2 and parts[0] == "files" and parts[1] in stub.files:
            self._json({k: v for k, v in stub.files[parts[1]].items() if k != "_data"})
        elif len(parts) == 3 and parts[0] == "files" and parts[2] == "content" and parts[1] in stub.files:
            self._send(200, stub.files[parts[1]]["_data"], ctype="application/octet-stream")
        elif parts == ["batches"]:
            data = sorted(stub.batches.values(), key=lambda b: b["created_at"], reverse=True)
            self._json({"object": "list", "data": data, "has_more": False})
        elif len(parts) == 2 and parts[0] == "batches" and parts[1] in stub.batches:
            self._json(stub.batches[parts[1]])
        elif url.path.rstrip("/") in ("/health", "/v1/health"):
            self._json({"status": "ok"})
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        if self._dead():
            return
        stub = self.server_stub
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = urlparse(self.path).path.rstrip("/")
        if path == "/v1/chat/completions":
            if not stub.admit():
                self._error(429, "rate limited", {"retry-after": f"{stub.retry_after:g}"})
                return
            if stub.latency > 0:
                time.sleep(stub.latency)
            if self._dead():
                return
            payload = stub.completion(json.loads(raw), online=True)
            with stub.lock:
                stub.ok_times.append(time.monotonic())
            self._json(payload)
        elif path == "/v1/files":
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + raw
            )
            fields: dict[str, Any] = {}
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                fields[str(name)] = (part.get_filename(), part.get_payload(decode=True))
            filename, data = fields["file"]
            purpose = fields["purpose"][1].decode()
            with stub.lock:
                stub.uploads += 1
            self._json(stub.add_file(str(filename), purpose, data))
        elif path == "/v1/batches":
            body = json.loads(raw)
            if body.get("input_file_id") not in stub.files:
                self._error(400, "no such input file")
                return
            self._json(stub.create_batch(body))
        elif path.startswith("/v1/batches/") and path.endswith("/cancel"):
            bid = path.split("/")[3]
            if bid not in stub.batches:
                self._error(404, "no such batch")
                return
            b = stub.batches[bid]
            if b["status"] in ("validating", "in_progress"):
                b["status"] = "cancelling"
            self._json(b)
        else:
            self._error(404, f"no route {self.path}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="A local OpenAI-compatible server for labeling at scale.")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--latency", type=float, default=0.0, help="seconds before each chat answer")
    p.add_argument("--rate", type=float, default=0.0, help="chat requests/s answered; more get 429")
    args = p.parse_args(argv)
    stub = ScaleStub(latency=args.latency, rate=args.rate, port=args.port)
    stub.run_until_signalled()
    return 0


if __name__ == "__main__":
    sys.exit(main())
