"""Masking of secret-looking payload fields and redaction of payload values in messages."""

from __future__ import annotations

import hashlib

from arxctl.policy.masking import is_secret_key, mask, payload_digest, redact_text


def test_secret_keys() -> None:
    secret = ["password", "db_password", "passwd", "client_secret", "api_key", "apiKey", "X-Api-Key", "token",
              "access_token", "Authorization", "auth", "private_key", "credentials", "cookie", "ssn", "card_number",
              "cvv", "pin", "user-pin", "aws_secret_access_key", "session_key", "signature", "bearer"]
    plain = ["max_tokens", "author", "bypass", "passenger", "change_ids", "bucket", "spin", "tokens", "session",
             "description"]
    assert [k for k in secret if not is_secret_key(k)] == []
    assert [k for k in plain if is_secret_key(k)] == []


def test_mask_is_deep_and_leaves_the_input_alone() -> None:
    payload = {"bucket": "logs", "auth": {"token": "t0k3n", "user": "svc"}, "items": [{"password": "p"}, 3],
               "max_tokens": 100}
    assert mask(payload) == {"bucket": "logs", "auth": "***", "items": [{"password": "***"}, 3], "max_tokens": 100}
    assert payload["auth"] == {"token": "t0k3n", "user": "svc"}


def test_redact_text() -> None:
    payload = {"token": "hunter22", "nested": {"id": 123456}, "short": "ab", "flag": True}
    assert redact_text("bad value 'hunter22' for 123456 (ab, True)", payload) == "bad value '***' for *** (ab, True)"


def test_digest_is_of_the_unmasked_canonical_payload() -> None:
    payload = {"b": 1, "a": {"password": "x"}}
    assert payload_digest(payload) == "sha256:" + hashlib.sha256(b'{"a":{"password":"x"},"b":1}').hexdigest()
