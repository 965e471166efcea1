"""The audit chain: hash-linked records in a Merkle tree, signed checkpoints, witnesses, exports, offline verify."""

from __future__ import annotations

from typing import Any

from arxctl.chain.records import GENESIS, Record, record_hash

_LAZY = {"ChainVerification", "Problem", "VerifyResult", "verify_chain", "verify_lines", "verify_store"}

__all__ = ["GENESIS", "Record", "record_hash", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    """Load the verifier only when asked for, so appending to the chain stays a light import."""
    if name in _LAZY:
        from arxctl.chain import verify

        return getattr(verify, name)
    raise AttributeError(f"module 'arxctl.chain' has no attribute {name!r}")
