"""Anthropic Messages API (`POST /v1/messages`), plain and streaming."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from arxctl.router.errors import (
    LLMAuthError,
    LLMBadRequest,
    LLMBadResponse,
    LLMConnectionError,
    LLMError,
    LLMNotFoundError,
    LLMOverloadedError,
    LLMQuotaError,
    LLMRateLimitError,
    LLMRefusal,
    LLMServerError,
    LLMTimeoutError,
    by_status,
)
from arxctl.router.providers.base import Params, Provider, StreamDecoder, StreamItem, load_json
from arxctl.router.types import Completion, Message, Usage

API_VERSION = "2023-06-01"
ERROR_TYPES: dict[str, type[LLMError]] = {
    "authentication_error": LLMAuthError,
    "permission_error": LLMAuthError,
    "rate_limit_error": LLMRateLimitError,
    "overloaded_error": LLMOverloadedError,
    "api_error": LLMServerError,
    "timeout_error": LLMTimeoutError,
    "not_found_error": LLMNotFoundError,
    "billing_error": LLMQuotaError,
    "invalid_request_error": LLMBadRequest,
    "request_too_large": LLMBadRequest,
}
_POLICY_WORDS = ("content filtering policy", "content policy", "usage policy")


def _refusal(provider: str, where: str) -> LLMRefusal:
    return LLMRefusal(f"{provider}: refusal ({where})", provider=provider, error_type="refusal")


def classify(status: int | None, body: Any) -> tuple[type[LLMError], str | None, str]:
    """The error class for an Anthropic error body: by `error.type`, then by status."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return (by_status(status) if status is not None else LLMServerError), None, ""
    error_type = error.get("type") if isinstance(error.get("type"), str) else None
    message = error.get("message") if isinstance(error.get("message"), str) else ""
    if error_type == "invalid_request_error" and any(w in message.lower() for w in _POLICY_WORDS):
        return LLMRefusal, error_type, message
    if error_type in ERROR_TYPES:
        return ERROR_TYPES[error_type], error_type, message
    return (by_status(status) if status is not None else LLMServerError), error_type, message


class AnthropicProvider(Provider):
    kind = "anthropic"

    def request(
        self, model: str, messages: tuple[Message, ...], params: Params, *, stream: bool, key: str | None
    ) -> tuple[str, bytes, dict[str, str]]:
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": params.max_tokens,
            "messages": [m.to_dict() for m in messages if m.role != "system"],
        }
        if system:
            body["system"] = system
        if params.temperature is not None:
            body["temperature"] = params.temperature
        if stream:
            body["stream"] = True
        headers = {"anthropic-version": API_VERSION, "content-type": "application/json"}
        if key is not None:
            headers["x-api-key"] = key
        return "/v1/messages", orjson.dumps(body), headers

    def parse(self, data: Any) -> Completion:
        try:
            text = "".join(b["text"] for b in data["content"] if b.get("type") == "text")
            usage = data.get("usage") or {}
            stop_reason = data.get("stop_reason")
            model = data.get("model") or ""
            tokens = Usage(int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0))
        except (KeyError, TypeError, AttributeError, ValueError):
            raise LLMBadResponse(f"{self.name}: response is not a Messages API message", provider=self.name,
                                 error_type="bad_shape") from None
        if stop_reason == "refusal":
            raise _refusal(self.name, "stop_reason refusal")
        return Completion(text, model, stop_reason, tokens)

    def classify(self, status: int | None, body: Any) -> tuple[type[LLMError], str | None, str]:
        return classify(status, body)

    def decoder(self) -> StreamDecoder:
        return _Decoder(self)


class _Decoder(StreamDecoder):
    """message_start, content_block_delta..., message_delta, message_stop; `error` events raise."""

    def __init__(self, provider: AnthropicProvider) -> None:
        self.provider = provider
        self.parts: list[str] = []
        self.model = ""
        self.stop_reason: str | None = None
        self.input_tokens = 0
        self.output_tokens = 0
        self.done = False

    def feed(self, event: str, data: str) -> Iterator[StreamItem]:
        name = self.provider.name
        if event == "ping":
            return
        payload = load_json(name, data)
        if not isinstance(payload, dict):
            raise LLMBadResponse(f"{name}: stream event is not an object", provider=name, error_type="bad_shape")
        kind = payload.get("type", event)
        if kind == "error":
            raise self.provider.error(None, data, None)
        if kind == "message_start":
            message = payload.get("message") or {}
            self.model = message.get("model") or ""
            usage = message.get("usage") or {}
            self.input_tokens = int(usage.get("input_tokens") or 0)
            self.output_tokens = int(usage.get("output_tokens") or 0)
        elif kind == "content_block_delta":
            delta = payload.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                self.parts.append(delta["text"])
                yield delta["text"]
        elif kind == "message_delta":
            delta = payload.get("delta") or {}
            self.stop_reason = delta.get("stop_reason") or self.stop_reason
            if self.stop_reason == "refusal":
                raise _refusal(name, "stop_reason refusal in stream")
            usage = payload.get("usage") or {}
            self.output_tokens = int(usage.get("output_tokens") or self.output_tokens)
        elif kind == "message_stop":
            self.done = True

    def finish(self) -> Completion:
        if not self.done:
            name = self.provider.name
            raise LLMConnectionError(f"{name}: stream ended before message_stop", provider=name,
                                     error_type="stream_cut")
        return Completion("".join(self.parts), self.model, self.stop_reason,
                          Usage(self.input_tokens, self.output_tokens))
