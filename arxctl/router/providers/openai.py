"""OpenAI Chat Completions (`POST /chat/completions`) and OpenAI-compatible endpoints, plain and streaming."""

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
    by_status,
)
from arxctl.router.providers.base import Params, Provider, StreamDecoder, StreamItem, load_json
from arxctl.router.types import Completion, Message, Usage

ERROR_CODES: dict[str, type[LLMError]] = {
    "content_policy_violation": LLMRefusal,
    "content_filter": LLMRefusal,
    "context_length_exceeded": LLMBadRequest,
    "string_above_max_length": LLMBadRequest,
    "invalid_api_key": LLMAuthError,
    "insufficient_quota": LLMQuotaError,
    "rate_limit_exceeded": LLMRateLimitError,
    "model_not_found": LLMNotFoundError,
}
ERROR_TYPES: dict[str, type[LLMError]] = {
    "insufficient_quota": LLMQuotaError,
    "server_error": LLMServerError,
}


def classify(status: int | None, body: Any) -> tuple[type[LLMError], str | None, str]:
    """The error class for an OpenAI error body: by `error.code`, then `error.type`, then status."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return (by_status(status) if status is not None else LLMServerError), None, ""
    code = error.get("code") if isinstance(error.get("code"), str) else None
    error_type = error.get("type") if isinstance(error.get("type"), str) else None
    message = error.get("message") if isinstance(error.get("message"), str) else ""
    if code in ERROR_CODES:
        return ERROR_CODES[code], code, message
    if error_type in ERROR_TYPES:
        cls = ERROR_TYPES[error_type]
        if cls is LLMServerError and status in (503, 529):
            cls = LLMOverloadedError
        return cls, error_type, message
    if status is None:
        return (LLMBadRequest if error_type == "invalid_request_error" else LLMServerError), error_type, message
    return by_status(status), code or error_type, message


def _refusal(provider: str, where: str) -> LLMRefusal:
    return LLMRefusal(f"{provider}: refusal ({where})", provider=provider, error_type="refusal")


class OpenAIProvider(Provider):
    """OpenAI itself: `max_completion_tokens`, and usage requested on streams."""

    kind = "openai"
    max_tokens_field = "max_completion_tokens"
    stream_usage = True

    def request(
        self, model: str, messages: tuple[Message, ...], params: Params, *, stream: bool, key: str | None
    ) -> tuple[str, bytes, dict[str, str]]:
        body: dict[str, Any] = {
            "model": model,
            "messages": [m.to_dict() for m in messages],
            self.max_tokens_field: params.max_tokens,
        }
        if params.temperature is not None:
            body["temperature"] = params.temperature
        if stream:
            body["stream"] = True
            if self.stream_usage:
                body["stream_options"] = {"include_usage": True}
        headers = {"content-type": "application/json"}
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        return "/chat/completions", orjson.dumps(body), headers

    def parse(self, data: Any) -> Completion:
        if isinstance(data, dict) and "error" in data and "choices" not in data:
            raise self.error(None, orjson.dumps(data), None)
        try:
            choice = data["choices"][0]
            message = choice["message"]
            finish = choice.get("finish_reason")
            refusal = message.get("refusal")
            text = message.get("content") or ""
            usage = data.get("usage") or {}
            tokens = Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
            model = data.get("model") or ""
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            raise LLMBadResponse(f"{self.name}: response is not a chat completion", provider=self.name,
                                 error_type="bad_shape") from None
        if finish == "content_filter":
            raise _refusal(self.name, "finish_reason content_filter")
        if refusal:
            raise _refusal(self.name, "message.refusal")
        return Completion(text, model, finish, tokens)

    def classify(self, status: int | None, body: Any) -> tuple[type[LLMError], str | None, str]:
        return classify(status, body)

    def decoder(self) -> StreamDecoder:
        return _Decoder(self)


class OpenAICompatibleProvider(OpenAIProvider):
    """Any server speaking Chat Completions (vLLM, Azure-style gateways, local models): `max_tokens`."""

    kind = "openai-compatible"
    max_tokens_field = "max_tokens"
    stream_usage = False


class _Decoder(StreamDecoder):
    """`data:` chunks until `[DONE]`; an `error` object or a content-filter finish raises."""

    def __init__(self, provider: OpenAIProvider) -> None:
        self.provider = provider
        self.parts: list[str] = []
        self.model = ""
        self.stop_reason: str | None = None
        self.usage = Usage()
        self.done = False

    def feed(self, event: str, data: str) -> Iterator[StreamItem]:
        name = self.provider.name
        if data.strip() == "[DONE]":
            self.done = True
            return
        chunk = load_json(name, data)
        if not isinstance(chunk, dict):
            raise LLMBadResponse(f"{name}: stream chunk is not an object", provider=name, error_type="bad_shape")
        if "error" in chunk:
            raise self.provider.error(None, data, None)
        self.model = chunk.get("model") or self.model
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("refusal"):
                raise _refusal(name, "refusal delta in stream")
            if choice.get("finish_reason") == "content_filter":
                raise _refusal(name, "finish_reason content_filter in stream")
            self.stop_reason = choice.get("finish_reason") or self.stop_reason
            text = delta.get("content")
            if text:
                self.parts.append(text)
                yield text

    def finish(self) -> Completion:
        if not self.done:
            name = self.provider.name
            raise LLMConnectionError(f"{name}: stream ended before [DONE]", provider=name, error_type="stream_cut")
        return Completion("".join(self.parts), self.model, self.stop_reason, self.usage)
