"""Chain records (formats.md section 7) and their canonical hashing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from arxctl.canonical import canonical_bytes, sha256_hex

GENESIS = "sha256:" + "0" * 64
FIELDS = ("seq", "ts", "type", "agent", "actor", "body", "prev", "hash")


def record_hash(record: dict[str, Any]) -> str:
    """SHA-256 over the canonical JSON of the record without `hash`."""
    unhashed = {k: v for k, v in record.items() if k != "hash"}
    return "sha256:" + sha256_hex(canonical_bytes(unhashed))


@dataclass(frozen=True, slots=True)
class Record:
    seq: int
    ts: str
    type: str
    agent: str | None
    actor: str | None
    body: dict[str, Any]
    prev: str
    hash: str

    @classmethod
    def build(
        cls, *, seq: int, ts: str, type: str, agent: str | None, actor: str | None,
        body: dict[str, Any], prev: str,
    ) -> Record:
        fields = {"seq": seq, "ts": ts, "type": type, "agent": agent, "actor": actor, "body": body, "prev": prev}
        return cls(**fields, hash=record_hash(fields))

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq, "ts": self.ts, "type": self.type, "agent": self.agent, "actor": self.actor,
            "body": self.body, "prev": self.prev, "hash": self.hash,
        }

    def line(self) -> str:
        """The canonical JSON line stored and exported for this record."""
        return canonical_bytes(self.to_dict()).decode("utf-8")

    @classmethod
    def from_line(cls, line: str | bytes) -> Record:
        data = orjson.loads(line)
        return cls(**{k: data[k] for k in FIELDS})
