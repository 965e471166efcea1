"""What every provider shares: the HTTP client, key lookup, transport-error mapping and SSE reading."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
import orjson

from arxctl.router.config import ProviderSpec
from arxctl.router.errors import (
    LLMAuthError,
    LLMBadResponse,
    LLMConnectionError,
    LLMError,
    LLMMissingKey,
    LLMTimeoutError,
    redact,
)
from arxctl.router.types import Completion, Message

USER_AGENT = "arxctl-router/1"
StreamItem = str | Completion


@dataclass(frozen=True, slots=True)
class Params:
    """Generation settings the router passes to every provider alike."""

    max_tokens: int = 1024
    temperature: float | None = None


def transport_error(provider: str, exc: httpx.HTTPError) -> LLMError:
    """Map an httpx failure to a typed error; the message never carries request headers."""
    if isinstance(exc, httpx.ConnectTimeout):
        return LLMTimeoutError(f"{provider}: connect timeout", provider=provider, error_type="connect_timeout")
    if isinstance(exc, httpx.TimeoutException):
        return LLMTimeoutError(f"{provider}: read timeout", provider=provider, error_type="read_timeout")
    if isinstance(exc, httpx.ConnectError):
        return LLMConnectionError(f"{provider}: cannot connect", provider=provider, error_type="connect_error")
    if isinstance(exc, httpx.RemoteProtocolError):
        return LLMConnectionError(f"{provider}: connection dropped", provider=provider, error_type="dropped")
    return LLMConnectionError(f"{provider}: connection failed ({type(exc).__name__})", provider=provider,
                              error_type="transport_error")


def iter_sse(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Server-sent events as (event name, data) pairs."""
    event, data = "message", []
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
    if data:
        yield event, "\n".join(data)


def load_json(provider: str, text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise LLMBadResponse(f"{provider}: response is not JSON", provider=provider,
                             error_type="bad_json") from None


class StreamDecoder(ABC):
    """Turns one provider's stream events into text deltas and, at the end, a Completion."""

    @abstractmethod
    def feed(self, event: str, data: str) -> Iterator[StreamItem]: ...

    @abstractmethod
    def finish(self) -> Completion: ...


class Provider(ABC):
    """One configured endpoint speaking one provider's wire format."""

    kind: ClassVar[str]

    def __init__(
        self, spec: ProviderSpec, *, env: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self._env = os.environ if env is None else env
        self.client = httpx.Client(
            base_url=spec.base_url,
            timeout=httpx.Timeout(spec.read_timeout, connect=spec.connect_timeout),
            transport=transport or httpx.HTTPTransport(retries=0),
            follow_redirects=False,
            headers={"user-agent": USER_AGENT},
        )

    def key(self) -> str | None:
        """The API key from the environment at call time (so a rotated key needs no restart)."""
        if self.spec.api_key_env is None:
            return None
        value = self._env.get(self.spec.api_key_env)
        if not value:
            raise LLMMissingKey(f"{self.name}: environment variable {self.spec.api_key_env} is not set",
                                provider=self.name, error_type="missing_api_key")
        return value

    @abstractmethod
    def request(
        self, model: str, messages: tuple[Message, ...], params: Params, *, stream: bool, key: str | None
    ) -> tuple[str, bytes, dict[str, str]]:
        """The path, body and headers of one call."""

    @abstractmethod
    def parse(self, data: Any) -> Completion:
        """A Completion from a 2xx body; a refusal raises LLMRefusal."""

    @abstractmethod
    def classify(self, status: int | None, body: Any) -> tuple[type[LLMError], str | None, str]:
        """(error class, provider error type, provider message) for an error body (None when not JSON)."""

    @abstractmethod
    def decoder(self) -> StreamDecoder: ...

    def error(self, status: int | None, content: bytes | str, key: str | None) -> LLMError:
        """A typed error from an error response; the provider's message is redacted before use."""
        try:
            body = orjson.loads(content) if content else None
        except orjson.JSONDecodeError:
            body = None
        cls, error_type, message = self.classify(status, body)
        code = f"HTTP {status}" if status is not None else "in stream"
        what = error_type or "error"
        text = f"{self.name}: {what} ({code})"
        if message and not issubclass(cls, LLMAuthError):
            text += ": " + redact(message, [key] if key else [])
        return cls(text, provider=self.name, status_code=status, error_type=error_type)

    def complete(self, model: str, messages: tuple[Message, ...], params: Params) -> Completion:
        """One non-streaming call."""
        key = self.key()
        path, body, headers = self.request(model, messages, params, stream=False, key=key)
        try:
            response = self.client.post(path, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise transport_error(self.name, exc) from None
        if not 200 <= response.status_code < 300:
            raise self.error(response.status_code, response.content, key)
        return self.parse(load_json(self.name, response.content))

    def stream(self, model: str, messages: tuple[Message, ...], params: Params) -> Iterator[StreamItem]:
        """One streaming call: text deltas, then the Completion; failures raise typed errors."""
        key = self.key()
        path, body, headers = self.request(model, messages, params, stream=True, key=key)
        try:
            with self.client.stream("POST", path, content=body, headers=headers) as response:
                if not 200 <= response.status_code < 300:
                    raise self.error(response.status_code, response.read(), key)
                if "text/event-stream" not in response.headers.get("content-type", ""):
                    data = load_json(self.name, response.read())
                    if isinstance(data, dict) and "error" in data:
                        raise self.error(None, orjson.dumps(data), key)
                    raise LLMBadResponse(f"{self.name}: expected an event stream", provider=self.name,
                                         error_type="not_a_stream")
                decoder = self.decoder()
                for event, data_text in iter_sse(response.iter_lines()):
                    yield from decoder.feed(event, data_text)
                yield decoder.finish()
        except httpx.HTTPError as exc:
            raise transport_error(self.name, exc) from None

    def close(self) -> None:
        self.client.close()
