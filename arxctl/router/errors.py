"""LLM call errors, classed by the provider's error type; each class says whether the next provider may try."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from arxctl.errors import ArxError

if TYPE_CHECKING:
    from arxctl.router.types import Attempt

MAX_MESSAGE = 300
_KEYLIKE = re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-*]{4,}", re.IGNORECASE)
_BEARER = re.compile(r"(?i)bearer\s+\S+")


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    """Remove API keys (the known ones and anything key-shaped) and clip the text."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    text = _BEARER.sub("Bearer [redacted]", text)
    text = _KEYLIKE.sub("[redacted]", text)
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


class LLMError(ArxError):
    """A failed LLM attempt or call; `failover` says whether the next provider may take over."""

    failover: ClassVar[bool] = True
    counts_for_breaker: ClassVar[bool] = True

    def __init__(
        self, message: str, *, provider: str | None = None, status_code: int | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.status_code = status_code
        self.error_type = error_type
        self.attempts: tuple[Attempt, ...] = ()
        self.provider_used: str | None = None
        self.breaker: str | None = None

    @property
    def kind(self) -> str:
        return type(self).__name__


class LLMAuthError(LLMError):
    """The provider refused the credentials (401 authentication_error, 403 permission_error)."""


class LLMRateLimitError(LLMError):
    """The provider is rate limiting this key (429 rate_limit_error)."""


class LLMQuotaError(LLMError):
    """The account's quota or credit is exhausted (OpenAI insufficient_quota)."""


class LLMOverloadedError(LLMError):
    """The provider is overloaded (Anthropic 529 overloaded_error, 503)."""


class LLMServerError(LLMError):
    """The provider failed internally (5xx api_error, server_error)."""


class LLMProviderError(LLMError):
    """The provider answered with a status and error type this router does not know."""


class LLMNotFoundError(LLMError):
    """The provider does not know the model or endpoint (404); another provider has its own model."""


class LLMTimeoutError(LLMError):
    """Connecting to or reading from the provider took longer than its timeout."""


class LLMConnectionError(LLMError):
    """The connection was refused or dropped, or a stream ended before its terminal event."""


class LLMBadResponse(LLMError):
    """The provider answered with a body that is not its API's shape."""


class LLMMissingKey(LLMError):
    """The provider's API key environment variable is unset; the provider was not contacted."""

    counts_for_breaker = False


class LLMNoModel(LLMError):
    """The provider has no model configured for the requested tier; it was not contacted."""

    counts_for_breaker = False


class LLMRejection(LLMError):
    """The request itself was rejected: another provider would reject it too, so it is never re-routed."""

    failover = False
    counts_for_breaker = False


class LLMBadRequest(LLMRejection):
    """Invalid request: 400 invalid_request_error, context length exceeded, request too large."""


class LLMRefusal(LLMRejection):
    """A content-policy refusal (an error body, a refusal stop reason, or a refusal mid-stream)."""


class LLMUnavailable(LLMError):
    """Every provider in the order failed or was skipped; `attempts` shows each one."""


class LLMCircuitOpen(LLMUnavailable):
    """Every provider was skipped because its circuit is open; none was contacted."""

    def __init__(self, message: str, *, open_until: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.open_until = open_until


class LLMStreamInterrupted(LLMError):
    """A stream failed after text reached the caller; it is not re-routed (the caller has partial output)."""

    failover = False

    def __init__(self, message: str, *, cause_kind: str, delivered_chars: int, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.cause_kind = cause_kind
        self.delivered_chars = delivered_chars


class BreakerUnavailable(ArxError):
    """The shared breaker store (Redis) cannot be reached or read."""


def by_status(status: int) -> type[LLMError]:
    """The class for an HTTP status when the body names no known error type."""
    if status in (401, 403):
        return LLMAuthError
    if status == 429:
        return LLMRateLimitError
    if status == 404:
        return LLMNotFoundError
    if status in (400, 413, 422):
        return LLMBadRequest
    if status in (503, 529):
        return LLMOverloadedError
    if status >= 500:
        return LLMServerError
    return LLMProviderError
