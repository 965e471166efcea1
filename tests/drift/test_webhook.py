"""Signed webhook delivery against a real loopback server: signature, retries, backoff, deadlines, no leaks."""

from __future__ import annotations

import socket
import time
from datetime import timedelta

import pytest

from arxctl.canonical import canonical_bytes
from arxctl.errors import InputError
from arxctl.registry import webhook
from arxctl.registry.config import WebhookConfig
from tests.drift.conftest import SECRET, Receiver

PAYLOAD = {"type": "drift.detected", "id": "drift-0123456789abcdef0123", "agent": "triage-cs-01",
           "severity": "critical", "findings": [{"kind": "undeclared-connector", "subject": "aws"}]}


def target(receiver: Receiver, **kw: object) -> webhook.Target:
    return webhook.Target(url=receiver.url, secret=SECRET.encode(), **kw)  # type: ignore[arg-type]


def outcomes(delivery: webhook.Delivery) -> list[tuple[int, str, int | None, str, bool]]:
    return [(a.n, a.outcome, a.status, a.detail, a.final) for a in delivery.attempts]


def test_a_delivery_is_signed_over_the_timestamp_and_raw_body(receiver: Receiver) -> None:
    seen: list[webhook.Attempt] = []
    delivery = webhook.deliver(target(receiver), PAYLOAD, on_attempt=seen.append, sleep=pytest.fail)
    assert delivery.delivered is True
    assert outcomes(delivery) == [(1, "delivered", 200, "HTTP 200", True)]
    assert list(delivery.attempts) == seen
    port = receiver.server.server_address[1]
    assert (seen[0].delivery, seen[0].target) == ("drift-0123456789abcdef0123", f"http://127.0.0.1:{port}")
    got = receiver.requests[0]
    assert (got.path, got.signature_ok, got.fresh, got.body) == (
        "/hooks/arx?token=q-secret-path", True, True, canonical_bytes(PAYLOAD))
    assert {k: got.headers[k] for k in ("Content-Type", "X-Arx-Event", "X-Arx-Delivery")} == {
        "Content-Type": "application/json", "X-Arx-Event": "drift.detected",
        "X-Arx-Delivery": "drift-0123456789abcdef0123"}
    assert got.headers["X-Arx-Signature"] == webhook.signature(SECRET.encode(), got.headers["X-Arx-Timestamp"],
                                                               got.body)
    assert delivery.to_dict() == {"delivery": "drift-0123456789abcdef0123", "delivered": True, "outcome": "delivered",
                                  "detail": "HTTP 200", "attempts": 1}


def test_transient_failures_are_retried_with_backoff(receiver: Receiver) -> None:
    receiver.fail_first = 2
    waits: list[float] = []
    delivery = webhook.deliver(target(receiver), PAYLOAD, sleep=waits.append)
    assert outcomes(delivery) == [
        (1, "http-error", 503, "HTTP 503", False),
        (2, "http-error", 503, "HTTP 503", False),
        (3, "delivered", 200, "HTTP 200", True),
    ]
    assert waits == [0.5, 1.0]
    assert [r.signature_ok for r in receiver.requests] == [True, True, True]
    assert {r.headers["X-Arx-Delivery"] for r in receiver.requests} == {"drift-0123456789abcdef0123"}


def test_retries_are_bounded(receiver: Receiver) -> None:
    receiver.fail_first = 99
    waits: list[float] = []
    delivery = webhook.deliver(target(receiver, attempts=3), PAYLOAD, sleep=waits.append)
    assert delivery.delivered is False
    assert outcomes(delivery) == [
        (1, "http-error", 503, "HTTP 503", False),
        (2, "http-error", 503, "HTTP 503", False),
        (3, "http-error", 503, "HTTP 503; gave up: attempts exhausted", True),
    ]
    assert (waits, len(receiver.requests)) == ([0.5, 1.0], 3)


def test_backoff_doubles_up_to_its_cap(receiver: Receiver) -> None:
    receiver.fail_first = 99
    waits: list[float] = []
    webhook.deliver(target(receiver, attempts=7, max_backoff_s=4.0), PAYLOAD, sleep=waits.append)
    assert waits == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


@pytest.mark.parametrize(("status", "signed_with", "expected"), [
    (400, SECRET, (1, "http-error", 400, "HTTP 400", True)),
    (404, SECRET, (1, "http-error", 404, "HTTP 404", True)),
    (200, "the-wrong-secret", (1, "http-error", 401, "HTTP 401", True)),
])
def test_a_rejection_is_final(receiver: Receiver, status: int, signed_with: str, expected: tuple) -> None:
    receiver.fail_first, receiver.fail_status = (1, status) if status != 200 else (0, 503)
    hook = webhook.Target(url=receiver.url, secret=signed_with.encode())
    delivery = webhook.deliver(hook, PAYLOAD, sleep=pytest.fail)
    assert outcomes(delivery) == [expected]
    assert receiver.requests[0].signature_ok is (signed_with == SECRET)


@pytest.mark.parametrize(("retry_after", "wait"), [("3", 3.0), ("600", 8.0), ("soon", 0.5)])
def test_retry_after_is_honoured_within_the_cap(receiver: Receiver, retry_after: str, wait: float) -> None:
    receiver.fail_first, receiver.fail_status, receiver.retry_after = 1, 429, retry_after
    waits: list[float] = []
    delivery = webhook.deliver(target(receiver), PAYLOAD, sleep=waits.append)
    assert (waits, delivery.delivered) == ([wait], True)


def test_a_hanging_receiver_is_cut_at_the_total_deadline(receiver: Receiver) -> None:
    receiver.hang = True
    started = time.monotonic()
    delivery = webhook.deliver(target(receiver, attempts=5, attempt_timeout_s=30.0, deadline_s=0.5), PAYLOAD,
                               sleep=pytest.fail)
    elapsed = time.monotonic() - started
    assert outcomes(delivery) == [(1, "timeout", None, "no answer within 0.5s; gave up: deadline reached", True)]
    assert 0.45 <= elapsed < 3.0
    assert receiver.wait_for(1)


def test_each_attempt_has_its_own_timeout(receiver: Receiver) -> None:
    receiver.hang = True
    waits: list[float] = []
    delivery = webhook.deliver(target(receiver, attempts=2, attempt_timeout_s=0.3, deadline_s=20.0), PAYLOAD,
                               sleep=waits.append)
    assert outcomes(delivery) == [
        (1, "timeout", None, "no answer within 0.3s", False),
        (2, "timeout", None, "no answer within 0.3s; gave up: attempts exhausted", True),
    ]
    assert waits == [0.5]


def test_a_closed_port_is_a_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    hook = webhook.Target(url=f"http://127.0.0.1:{port}/x", secret=b"k", attempts=2)
    waits: list[float] = []
    delivery = webhook.deliver(hook, PAYLOAD, sleep=waits.append)
    assert outcomes(delivery) == [
        (1, "connection-error", None, "Connection refused", False),
        (2, "connection-error", None, "Connection refused; gave up: attempts exhausted", True),
    ]


def test_receivers_verify_signature_and_freshness() -> None:
    body = canonical_bytes(PAYLOAD)
    header = webhook.signature(b"k", "1776160800", body)
    assert header == "sha256=" + __import__("hmac").new(b"k", b"1776160800." + body, "sha256").hexdigest()
    assert webhook.verify_signature(b"k", "1776160800", body, header, now_s=1776160800 + 300) is True
    assert webhook.verify_signature(b"k", "1776160800", body, header, now_s=1776160800 + 301) is False
    assert webhook.verify_signature(b"k", "1776160800", body + b" ", header, now_s=1776160800) is False
    assert webhook.verify_signature(b"other", "1776160800", body, header, now_s=1776160800) is False
    assert webhook.verify_signature(b"k", "1776160801", body, header, now_s=1776160800) is False
    assert webhook.verify_signature(b"k", "soon", body, header, now_s=1776160800) is False


def test_the_secret_and_the_url_path_never_show(receiver: Receiver) -> None:
    hook = target(receiver)
    assert SECRET not in repr(hook) and "q-secret-path" not in repr(hook)
    receiver.fail_first = 1
    delivery = webhook.deliver(hook, PAYLOAD, sleep=lambda _: None)
    text = str([a.to_dict() for a in delivery.attempts])
    assert SECRET not in text and "q-secret-path" not in text and "token" not in text
    assert webhook.origin("https://user:pw@hooks.example:8443/t/abc?k=v") == "https://hooks.example:8443"
    assert webhook.origin("http://[::1]/x") == "http://[::1]"


def test_a_target_from_the_project_config(monkeypatch: pytest.MonkeyPatch) -> None:
    config = WebhookConfig(url="https://hooks.example/arx", secret_env="ARX_TEST_HOOK", timeout=timedelta(seconds=2),
                           retries=2)
    monkeypatch.setenv("ARX_TEST_HOOK", "s3")
    hook = webhook.target_from_config(config, deadline=timedelta(seconds=9))
    assert (hook.url, hook.secret, hook.attempts, hook.attempt_timeout_s, hook.deadline_s) == (
        "https://hooks.example/arx", b"s3", 3, 2.0, 9.0)
    monkeypatch.delenv("ARX_TEST_HOOK")
    with pytest.raises(InputError) as caught:
        webhook.target_from_config(config)
    assert str(caught.value) == "environment variable ARX_TEST_HOOK (webhook.secret_env) is empty or unset"
    with pytest.raises(InputError) as caught:
        webhook.target_from_config(None)
    assert str(caught.value) == "no webhook.url in the project config"
