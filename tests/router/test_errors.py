"""Error classes come from the provider's error type first, the HTTP status only when the type is unknown."""

from __future__ import annotations

import pytest

from arxctl.router.errors import (
    LLMAuthError,
    LLMBadRequest,
    LLMNotFoundError,
    LLMOverloadedError,
    LLMProviderError,
    LLMQuotaError,
    LLMRateLimitError,
    LLMRefusal,
    LLMServerError,
    LLMTimeoutError,
    redact,
)
from arxctl.router.providers import anthropic, openai


def _anthropic(error_type: str | None, message: str = "") -> dict:
    return {"type": "error", "error": {"type": error_type, "message": message}}


def _openai(error_type: str | None, code: str | None = None, message: str = "") -> dict:
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, _anthropic("authentication_error", "invalid x-api-key"), (LLMAuthError, "authentication_error")),
        (403, _anthropic("permission_error", "org suspended"), (LLMAuthError, "permission_error")),
        (429, _anthropic("rate_limit_error"), (LLMRateLimitError, "rate_limit_error")),
        (529, _anthropic("overloaded_error", "Overloaded"), (LLMOverloadedError, "overloaded_error")),
        (500, _anthropic("api_error"), (LLMServerError, "api_error")),
        (504, _anthropic("timeout_error"), (LLMTimeoutError, "timeout_error")),
        (404, _anthropic("not_found_error", "model: x"), (LLMNotFoundError, "not_found_error")),
        (402, _anthropic("billing_error"), (LLMQuotaError, "billing_error")),
        (400, _anthropic("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"),
         (LLMBadRequest, "invalid_request_error")),
        (413, _anthropic("request_too_large"), (LLMBadRequest, "request_too_large")),
        (400, _anthropic("invalid_request_error", "Output blocked by content filtering policy"),
         (LLMRefusal, "invalid_request_error")),
        # The type decides, not the status: an overloaded body under 400 is still transient.
        (400, _anthropic("overloaded_error"), (LLMOverloadedError, "overloaded_error")),
        (529, _anthropic("some_future_error"), (LLMOverloadedError, "some_future_error")),
        (418, _anthropic("some_future_error"), (LLMProviderError, "some_future_error")),
        (502, None, (LLMServerError, None)),
        (None, _anthropic("overloaded_error"), (LLMOverloadedError, "overloaded_error")),
        (None, {"unexpected": True}, (LLMServerError, None)),
    ],
)
def test_anthropic_classes(status: int | None, body: dict | None, expected: tuple) -> None:
    cls, error_type, _ = anthropic.classify(status, body)
    assert (cls, error_type) == expected


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, _openai("invalid_request_error", "invalid_api_key"), (LLMAuthError, "invalid_api_key")),
        (401, _openai("invalid_request_error"), (LLMAuthError, "invalid_request_error")),
        (403, _openai(None, None, "country not supported"), (LLMAuthError, None)),
        (429, _openai("insufficient_quota", "insufficient_quota"), (LLMQuotaError, "insufficient_quota")),
        (429, _openai("insufficient_quota"), (LLMQuotaError, "insufficient_quota")),
        (429, _openai("requests", "rate_limit_exceeded"), (LLMRateLimitError, "rate_limit_exceeded")),
        (400, _openai("invalid_request_error", "content_policy_violation"), (LLMRefusal, "content_policy_violation")),
        (400, _openai("invalid_request_error", "content_filter"), (LLMRefusal, "content_filter")),
        (400, _openai("invalid_request_error", "context_length_exceeded"),
         (LLMBadRequest, "context_length_exceeded")),
        (400, _openai("invalid_request_error"), (LLMBadRequest, "invalid_request_error")),
        (404, _openai("invalid_request_error", "model_not_found"), (LLMNotFoundError, "model_not_found")),
        (500, _openai("server_error"), (LLMServerError, "server_error")),
        (503, _openai("server_error"), (LLMOverloadedError, "server_error")),
        # A refusal code wins whatever the status says.
        (500, _openai("invalid_request_error", "content_policy_violation"), (LLMRefusal, "content_policy_violation")),
        (502, None, (LLMServerError, None)),
        (None, _openai("invalid_request_error"), (LLMBadRequest, "invalid_request_error")),
        (None, _openai("overloaded_error"), (LLMServerError, "overloaded_error")),
    ],
)
def test_openai_classes(status: int | None, body: dict | None, expected: tuple) -> None:
    cls, error_type, _ = openai.classify(status, body)
    assert (cls, error_type) == expected


@pytest.mark.parametrize(
    ("cls", "failover", "counts"),
    [
        (LLMAuthError, True, True), (LLMRateLimitError, True, True), (LLMQuotaError, True, True),
        (LLMOverloadedError, True, True), (LLMServerError, True, True), (LLMTimeoutError, True, True),
        (LLMNotFoundError, True, True), (LLMBadRequest, False, False), (LLMRefusal, False, False),
    ],
)
def test_which_errors_fail_over(cls: type, failover: bool, counts: bool) -> None:
    assert (cls.failover, cls.counts_for_breaker) == (failover, counts)


def test_redact_removes_known_and_key_shaped_secrets() -> None:
    text = "Incorrect API key provided: sk-proj-****abcd. Header was Bearer sk-live-123456 and s3cr3t-value"
    assert redact(text, ["s3cr3t-value"]) == (
        "Incorrect API key provided: [redacted]. Header was Bearer [redacted] and [redacted]"
    )


def test_redact_clips_long_messages() -> None:
    assert redact("x" * 400) == "x" * 297 + "..."
