"""Shared fixtures. Append new fixtures at the end; keep each small."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from openai_stub import StubServer


@pytest.fixture
def stub_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., StubServer]]:
    """Start scripted OpenAI-compatible servers on 127.0.0.1: `stub_server(plan={...}, ...)`.
    Each is stopped at teardown. Clears the environment variables that would redirect the labeler."""
    for var in ("OPENAI_BASE_URL", "LABELER_CACHE"):
        monkeypatch.delenv(var, raising=False)
    started: list[StubServer] = []

    def start(**kwargs: Any) -> StubServer:
        server = StubServer(**kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
