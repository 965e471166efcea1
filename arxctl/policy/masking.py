"""Masking payloads for anything printed or logged; the chain only ever gets the payload digest."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from arxctl.canonical import digest

MASK = "***"
SECRET_KEY = re.compile(
    r"pass(word|wd|phrase)|^pass$|^pwd$|secret|token(?!s)|api[-_]?key|apikey|^auth$|authorization|"
    r"auth[-_]?token|bearer|private[-_]?key|credential|cookie|session[-_]?key|signature|access[-_]?key|"
    r"^ssn$|card[-_]?number|^cvv$|(^|[-_])pin$",
    re.IGNORECASE,
)
MIN_REDACT_LENGTH = 4


def is_secret_key(key: str) -> bool:
    """True when a payload field name looks like it holds a secret."""
    return bool(SECRET_KEY.search(key))


def mask(value: Any) -> Any:
    """A copy of a payload with the values of secret-looking fields (at any depth) replaced by `***`."""
    if isinstance(value, Mapping):
        return {k: MASK if isinstance(k, str) and is_secret_key(k) else mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask(v) for v in value]
    return value


def _strings(value: Any, out: set[str]) -> None:
    if isinstance(value, str):
        if len(value) >= MIN_REDACT_LENGTH:
            out.add(value)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _strings(k, out)
            _strings(v, out)
    elif isinstance(value, list | tuple):
        for v in value:
            _strings(v, out)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        text = str(value)
        if len(text) >= MIN_REDACT_LENGTH:
            out.add(text)


def redact_text(text: str, payload: Any) -> str:
    """Replace every payload value (strings and numbers of 4+ characters) that occurs in `text` with `***`."""
    values = set()
    _strings(payload, values)
    for value in sorted(values, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    return text


def payload_digest(payload: Any) -> str:
    """`sha256:<hex>` of the canonical JSON of the unmasked payload."""
    return digest(payload)
