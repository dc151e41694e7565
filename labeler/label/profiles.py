"""Model profiles: what a model and its server can do, so one task config works everywhere.

A profile says how to constrain the answer to the label set (OpenAI-style `response_format`
json_schema, or a llama.cpp GBNF `grammar`), whether the answer is a bare label or JSON, whether the
server returns token logprobs and accepts `n` > 1, and which stop strings end an answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from labeler.config import LOCAL, Endpoint
from labeler.errors import ConfigError


@dataclass(frozen=True)
class ModelProfile:
    name: str
    structured: Literal["json_schema", "grammar", "none"]
    answer: Literal["json", "label"]  # what the template asks for, unless verbalized confidence needs JSON
    logprobs: bool
    top_logprobs: int = 10
    supports_n: bool = True
    stop: tuple[str, ...] = ()
    prompt_style: Literal["chat", "completion"] = "chat"  # completion: a base model; use the completion_template


PROFILES: dict[str, ModelProfile] = {
    # OpenAI and servers that follow it closely (vLLM, recent llama.cpp, LiteLLM proxies).
    "openai": ModelProfile("openai", structured="json_schema", answer="json", logprobs=True, top_logprobs=20),
    "vllm": ModelProfile("vllm", structured="json_schema", answer="json", logprobs=True, top_logprobs=20),
    # Ollama's OpenAI endpoint takes json_schema but gives no logprobs.
    "ollama": ModelProfile("ollama", structured="json_schema", answer="json", logprobs=False, supports_n=False),
    # Any llama.cpp llama-server with an instruction-tuned model.
    "llamacpp": ModelProfile("llamacpp", structured="grammar", answer="json", logprobs=True, supports_n=False),
    # The embedded defaults (labeler.label.local): base / tiny models answer a bare label under a grammar.
    "gemma3-270m": ModelProfile(
        "gemma3-270m",
        structured="grammar",
        answer="label",
        logprobs=True,
        supports_n=False,
        stop=("\n",),
        prompt_style="completion",
    ),
    "smollm2-135m": ModelProfile(
        "smollm2-135m", structured="grammar", answer="label", logprobs=True, supports_n=False, stop=("\n",)
    ),
    # A server that accepts nothing beyond plain chat: parse whatever comes back.
    "plain": ModelProfile("plain", structured="none", answer="json", logprobs=False, supports_n=False),
}


def profile_for(endpoint: Endpoint) -> ModelProfile:
    name = endpoint.profile
    if name == "auto":
        if endpoint.base_url == LOCAL:
            name = endpoint.model if endpoint.model in PROFILES else "gemma3-270m"
        elif "api.openai.com" in endpoint.base_url:
            name = "openai"
        elif ":11434" in endpoint.base_url:
            name = "ollama"
        else:
            name = "openai"
    if name not in PROFILES:
        raise ConfigError(f"model.profile {name!r} is unknown; use auto or one of {', '.join(PROFILES)}")
    return PROFILES[name]
