"""The audit chain: hash-linked records of every platform action, verifiable offline."""

from arxctl.chain.records import GENESIS, Record, record_hash
from arxctl.chain.verify import VerifyResult, verify_lines

__all__ = ["GENESIS", "Record", "VerifyResult", "record_hash", "verify_lines"]
