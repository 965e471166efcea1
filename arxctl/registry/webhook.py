"""Signed webhook delivery: HMAC-SHA256 over the timestamp and raw body, bounded retries, a hard total deadline.

A receiver checks `X-Arx-Signature: sha256=<hex>` = HMAC-SHA256(secret, "<X-Arx-Timestamp>." + raw body),
rejects timestamps more than a few minutes old (replays), and de-duplicates on `X-Arx-Delivery` (the same on
every retry of one event). The secret and the URL's path and query never appear in records or messages.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from arxctl import __version__
from arxctl.canonical import canonical_bytes
from arxctl.clock import now_ts
from arxctl.errors import InputError

SIGNATURE_HEADER = "X-Arx-Signature"
TIMESTAMP_HEADER = "X-Arx-Timestamp"
DELIVERY_HEADER = "X-Arx-Delivery"
EVENT_HEADER = "X-Arx-Event"
DEFAULT_DEADLINE = timedelta(seconds=30)
DEFAULT_TOLERANCE_S = 300
BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_READ_LIMIT = 65_536

DELIVERED = "delivered"
NOT_SENT = "not-sent"
HTTP_ERROR = "http-error"
TIMEOUT = "timeout"
CONNECTION_ERROR = "connection-error"
TLS_ERROR = "tls-error"
PROTOCOL_ERROR = "protocol-error"


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The `X-Arx-Signature` value: `sha256=` and the hex HMAC-SHA256 of `<timestamp>.<body>`."""
    mac = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret: bytes, timestamp: str, body: bytes, header: str, *, now_s: float | None = None,
                     tolerance_s: float = DEFAULT_TOLERANCE_S) -> bool:
    """For receivers: the signature matches and the timestamp is within `tolerance_s` of now."""
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    current = time.time() if now_s is None else now_s
    if abs(current - sent) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), header)


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how to deliver: the URL, the signing secret and the retry budget."""

    url: str
    secret: bytes
    attempts: int = 4
    attempt_timeout_s: float = 5.0
    deadline_s: float = DEFAULT_DEADLINE.total_seconds()
    backoff_s: float = BACKOFF_S
    max_backoff_s: float = MAX_BACKOFF_S

    def __repr__(self) -> str:
        return f"Target(origin={origin(self.url)!r}, attempts={self.attempts}, deadline_s={self.deadline_s})"


def origin(url: str) -> str:
    """scheme://host[:port] of a URL: what records may show (paths and queries can carry tokens)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}"


@dataclass(frozen=True, slots=True)
class Attempt:
    """The outcome of one POST."""

    n: int
    ts: str
    outcome: str
    status: int | None
    detail: str
    latency_ms: int
    final: bool
    delivery: str
    target: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "delivery": self.delivery, "attempt": self.n, "outcome": self.outcome, "status": self.status,
            "detail": self.detail, "latency_ms": self.latency_ms, "final": self.final, "target": self.target,
        }


@dataclass(frozen=True, slots=True)
class Delivery:
    """Every attempt of one delivery and whether it arrived."""

    delivery: str
    attempts: tuple[Attempt, ...]

    @property
    def delivered(self) -> bool:
        return bool(self.attempts) and self.attempts[-1].outcome == DELIVERED

    def to_dict(self) -> dict[str, Any]:
        last = self.attempts[-1] if self.attempts else None
        return {
            "delivery": self.delivery, "delivered": self.delivered,
            "outcome": last.outcome if last else NOT_SENT, "detail": last.detail if last else "",
            "attempts": len([a for a in self.attempts if a.outcome != NOT_SENT]),
        }


def target_from_config(config: Any, *, deadline: timedelta = DEFAULT_DEADLINE) -> Target:
    """A Target from the project config's `webhook` section; InputError when there is none or it cannot be signed."""
    if config is None or not config.url:
        raise InputError("no webhook.url in the project config")
    return Target(
        url=config.url, secret=config.secret(), attempts=config.retries + 1,
        attempt_timeout_s=config.timeout.total_seconds(), deadline_s=deadline.total_seconds(),
    )


def not_sent(delivery: str, url: str | None, reason: str) -> Delivery:
    """A delivery that could not start (no URL, no secret): recorded, never silently dropped."""
    attempt = Attempt(0, now_ts(), NOT_SENT, None, reason, 0, True, delivery, origin(url) if url else "")
    return Delivery(delivery, (attempt,))


def deliver(
    target: Target, payload: Mapping[str, Any], *, event: str = "drift.detected",
    on_attempt: Callable[[Attempt], None] | None = None, monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep, wall: Callable[[], float] = time.time,
) -> Delivery:
    """POST the payload as canonical JSON until a 2xx, a non-retryable answer, the last attempt or the deadline.

    `on_attempt` sees each attempt as it finishes (the caller records it), `final` set on the last one.
    """
    body = canonical_bytes(payload)
    delivery = str(payload.get("id") or hashlib.sha256(body).hexdigest()[:20])
    where = origin(target.url)
    deadline = monotonic() + target.deadline_s
    attempts: list[Attempt] = []
    n = 0
    while n < max(1, target.attempts):
        n += 1
        remaining = deadline - monotonic()
        started = monotonic()
        timestamp = str(int(wall()))
        headers = {
            "Content-Type": "application/json", "User-Agent": f"arxctl/{__version__}", EVENT_HEADER: event,
            DELIVERY_HEADER: delivery, TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(target.secret, timestamp, body),
        }
        outcome, status, detail, retry_after = _post(
            target.url, body, headers, min(target.attempt_timeout_s, max(remaining, 0.001))
        )
        latency = int((monotonic() - started) * 1000)
        retryable = outcome not in (DELIVERED, TLS_ERROR) and (outcome != HTTP_ERROR or status in RETRY_STATUSES)
        wait = min(target.max_backoff_s, target.backoff_s * (2 ** (n - 1)))
        if retry_after is not None:
            wait = min(target.max_backoff_s, max(wait, retry_after))
        left = deadline - monotonic()
        final = not retryable or n >= target.attempts or left <= wait
        if final and retryable and outcome != DELIVERED:
            detail += "; gave up: " + ("attempts exhausted" if n >= target.attempts else "deadline reached")
        attempt = Attempt(n, now_ts(), outcome, status, detail, latency, final, delivery, where)
        attempts.append(attempt)
        if on_attempt is not None:
            on_attempt(attempt)
        if final:
            break
        sleep(wait)
    return Delivery(delivery, tuple(attempts))


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[str, int | None, str, float | None]:
    """One POST bounded by `timeout` in total (a watchdog shuts the socket at the deadline)."""
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        return CONNECTION_ERROR, None, "the webhook URL has an invalid port", None
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    fired = threading.Event()

    def cut() -> None:
        fired.set()
        sock = conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    watchdog = threading.Timer(timeout, cut)
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read(_READ_LIMIT)
        status = response.status
        retry_after = _retry_after(response.getheader("Retry-After"))
    except TimeoutError:
        return TIMEOUT, None, f"no answer within {timeout:.1f}s", None
    except ssl.SSLCertVerificationError as exc:
        return TLS_ERROR, None, f"TLS certificate rejected: {exc.verify_message}", None
    except (ssl.SSLError, http.client.HTTPException, OSError) as exc:
        if fired.is_set():
            return TIMEOUT, None, f"no answer within {timeout:.1f}s", None
        return _classify(exc), None, _describe(exc), None
    finally:
        watchdog.cancel()
        conn.close()
    if 200 <= status < 300:
        return DELIVERED, status, f"HTTP {status}", None
    return HTTP_ERROR, status, f"HTTP {status}", retry_after


def _classify(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return TLS_ERROR
    if isinstance(exc, http.client.HTTPException):
        return PROTOCOL_ERROR
    return CONNECTION_ERROR


def _describe(exc: BaseException) -> str:
    """A message about the failure that never repeats the URL."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:200]
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    return type(exc).__name__


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
