"""Streaming verification of hash-linked chain records: every problem is found and localized."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from arxctl.chain.records import FIELDS, GENESIS, record_hash


@dataclass(slots=True)
class Problem:
    seq: int | None
    kind: str
    detail: str
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "detail": self.detail, "line": self.line}


@dataclass(slots=True)
class VerifyResult:
    records: int = 0
    tip: str = GENESIS
    problems: list[Problem] = field(default_factory=list)
    no_gaps: bool = True
    tip_matches_witness: bool = False
    signatures_valid: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "tip_matches_witness": self.tip_matches_witness,
            "no_gaps": self.no_gaps,
            "signatures_valid": self.signatures_valid,
            "records": self.records,
            "problems": [p.to_dict() for p in self.problems],
        }


def verify_lines(lines: Iterable[str | bytes], *, expect_start: int = 1, expect_prev: str = GENESIS) -> VerifyResult:
    """Recompute every hash and link; keep going after a problem and report each one by seq and line."""
    result = VerifyResult()
    expected_seq = expect_start
    prev_hash = expect_prev
    seen: set[int] = set()
    for lineno, raw in enumerate(lines, start=1):
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        raw = raw.rstrip(b"\r\n")
        if not raw.strip():
            continue
        try:
            record = orjson.loads(raw)
            if not isinstance(record, dict):
                raise ValueError("not an object")
            missing = [f for f in FIELDS if f not in record]
            if missing:
                raise ValueError(f"missing field(s) {', '.join(missing)}")
            seq = record["seq"]
            if not isinstance(seq, int) or isinstance(seq, bool):
                raise ValueError("seq is not an integer")
        except (orjson.JSONDecodeError, ValueError) as exc:
            result.problems.append(Problem(None, "malformed", f"unparseable record: {exc}", lineno))
            result.no_gaps = False
            prev_hash = None  # the next link cannot be checked against a record we could not read
            expected_seq += 1
            continue
        result.records += 1
        if seq in seen:
            result.problems.append(Problem(seq, "duplicate", f"seq {seq} appears more than once", lineno))
        elif seq != expected_seq:
            if seq > expected_seq:
                result.no_gaps = False
                missing_range = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}..{seq - 1}"
                result.problems.append(Problem(expected_seq, "missing", f"seq {missing_range} missing", lineno))
            else:
                result.problems.append(
                    Problem(seq, "reordered", f"seq {seq} found where {expected_seq} was expected", lineno)
                )
        seen.add(seq)
        computed = record_hash(record)
        if computed != record["hash"]:
            result.problems.append(
                Problem(seq, "hash_mismatch", f"stored hash {record['hash']} != recomputed {computed}", lineno)
            )
        if prev_hash is not None and record["prev"] != prev_hash:
            result.problems.append(
                Problem(seq, "broken_link", f"prev {record['prev']} does not match the previous record's hash", lineno)
            )
        prev_hash = record["hash"]
        result.tip = record["hash"]
        expected_seq = max(expected_seq, seq) + 1 if seq >= expected_seq else expected_seq
    return result
