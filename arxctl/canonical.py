"""Canonical JSON (sorted keys, no spaces, UTF-8) and SHA-256 digests."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

_OPTS = orjson.OPT_SORT_KEYS


def canonical_bytes(obj: Any) -> bytes:
    """Serialise to canonical JSON bytes: sorted keys, no whitespace, UTF-8."""
    return orjson.dumps(obj, option=_OPTS)


def canonical_str(obj: Any) -> str:
    return canonical_bytes(obj).decode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest(obj: Any) -> str:
    """The `sha256:<hex>` digest of an object's canonical JSON."""
    return "sha256:" + sha256_hex(canonical_bytes(obj))
