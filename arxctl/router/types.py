"""Provider-neutral values: messages, usage, attempts, completions and the response the agent gets."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from arxctl.canonical import digest
from arxctl.router.errors import LLMBadRequest

ROLES = frozenset({"system", "user", "assistant"})


@dataclass(frozen=True, slots=True)
class Message:
    role: str
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


def normalize_messages(messages: Iterable[Mapping[str, Any] | Message]) -> tuple[Message, ...]:
    """Check and convert the caller's messages; a malformed list is a bad request, never sent anywhere."""
    out: list[Message] = []
    for i, item in enumerate(messages):
        if isinstance(item, Message):
            out.append(item)
            continue
        if not isinstance(item, Mapping):
            raise LLMBadRequest(f"messages[{i}] must be a mapping with 'role' and 'content'", error_type="messages")
        role, content = item.get("role"), item.get("content")
        if role not in ROLES:
            raise LLMBadRequest(f"messages[{i}].role must be one of: assistant, system, user", error_type="messages")
        if not isinstance(content, str):
            raise LLMBadRequest(f"messages[{i}].content must be a string", error_type="messages")
        out.append(Message(role, content))
    if not any(m.role != "system" for m in out):
        raise LLMBadRequest("messages need at least one user or assistant message", error_type="messages")
    return tuple(out)


def prompt_digest(messages: tuple[Message, ...]) -> str:
    """`sha256:` of the canonical JSON list of {role, content}: recomputable by whoever holds the prompt."""
    return digest([m.to_dict() for m in messages])


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True, slots=True)
class Completion:
    """One provider's successful answer."""

    text: str
    model: str
    stop_reason: str | None
    usage: Usage


@dataclass(frozen=True, slots=True)
class Attempt:
    """One provider tried (or skipped) during a call, as the audit row shows it."""

    provider: str
    ok: bool
    kind: str | None = None
    error_type: str | None = None
    status_code: int | None = None
    latency_ms: float = 0.0
    model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider, "model": self.model, "ok": self.ok, "kind": self.kind,
            "error_type": self.error_type, "status_code": self.status_code, "latency_ms": self.latency_ms,
        }


@dataclass(frozen=True, slots=True)
class Response:
    """What the agent gets back: the text plus where it came from."""

    text: str
    provider: str
    model: str
    model_tier: str
    stop_reason: str | None
    usage: Usage
    failover_hops: int
    attempts: tuple[Attempt, ...]
    breaker: str
    prompt_digest: str
