"""Signed checkpoints of the chain's Merkle tree, and publishing them to witnesses."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

import orjson

from arxctl.canonical import canonical_bytes
from arxctl.chain import store as chain
from arxctl.chain.keys import Signer, encode_sig
from arxctl.chain.records import GENESIS
from arxctl.clock import now_ts, parse_ts
from arxctl.store.sqlite import Store

FIELDS = ("log", "n", "size", "root", "tip", "ts", "prev", "key_id", "sig")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """`{size, root, tip, ts, key_id, sig}` plus the log id, its number `n` and the previous checkpoint's digest."""

    log: str
    n: int
    size: int
    root: str
    tip: str
    ts: str
    prev: str
    key_id: str
    sig: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def signed_bytes(self) -> bytes:
        """What the signature covers: the canonical JSON of every field but `sig`."""
        body = self.to_dict()
        del body["sig"]
        return canonical_bytes(body)

    def line(self) -> bytes:
        return canonical_bytes(self.to_dict())

    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.line()).hexdigest()

    def root_bytes(self) -> bytes:
        return bytes.fromhex(self.root.removeprefix("sha256:"))

    def object_name(self) -> str:
        stamp = parse_ts(self.ts).strftime("%Y%m%dT%H%M%S.%fZ")
        return f"{prefix(self.log)}{self.n:010d}-{self.size:012d}-{stamp}.json"

    @classmethod
    def parse(cls, data: bytes | str | dict[str, Any]) -> Checkpoint:
        """Read a checkpoint; ValueError names what is wrong."""
        doc = data if isinstance(data, dict) else orjson.loads(data)
        if not isinstance(doc, dict):
            raise ValueError("a checkpoint is a JSON object")
        missing = [f for f in FIELDS if f not in doc]
        if missing:
            raise ValueError(f"checkpoint lacks {', '.join(missing)}")
        for name in ("n", "size"):
            if not isinstance(doc[name], int) or isinstance(doc[name], bool) or doc[name] < 0:
                raise ValueError(f"checkpoint {name} is not a non-negative integer")
        for name in ("log", "root", "tip", "ts", "prev", "key_id", "sig"):
            if not isinstance(doc[name], str):
                raise ValueError(f"checkpoint {name} is not a string")
        for name in ("root", "tip", "prev"):
            text = doc[name]
            if not (text.startswith("sha256:") and len(text) == 71 and _is_hex(text[7:])):
                raise ValueError(f"checkpoint {name} is not sha256:<64 hex>")
        parse_ts(doc["ts"])
        return cls(**{f: doc[f] for f in FIELDS})


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def prefix(log: str) -> str:
    """Where a log's checkpoints live in a witness."""
    return f"checkpoints/{log}/"


def latest(conn: sqlite3.Connection) -> Checkpoint | None:
    row = conn.execute("SELECT line FROM chain_checkpoints ORDER BY n DESC LIMIT 1").fetchone()
    return Checkpoint.parse(row[0]) if row else None


def all_checkpoints(conn: sqlite3.Connection) -> list[Checkpoint]:
    return [Checkpoint.parse(r[0]) for r in conn.execute("SELECT line FROM chain_checkpoints ORDER BY n")]


def make_checkpoint(conn: sqlite3.Connection, signer: Signer) -> Checkpoint:
    """Sign the current tree head as checkpoint n+1 and store it; call inside a write transaction."""
    if not conn.in_transaction:
        raise RuntimeError("checkpoints are made inside a write transaction")
    previous = latest(conn)
    size, root = chain.merkle_root(conn)
    tip = chain.tip(conn)[1]
    ts = now_ts()
    if previous is not None and parse_ts(ts) < parse_ts(previous.ts):
        ts = previous.ts
    unsigned = Checkpoint(
        log=chain.log_id(conn), n=(previous.n + 1) if previous else 1, size=size, root="sha256:" + root.hex(),
        tip=tip, ts=ts, prev=previous.digest() if previous else GENESIS, key_id=signer.key_id, sig="",
    )
    signed = Checkpoint(**{**unsigned.to_dict(), "sig": encode_sig(signer.sign(unsigned.signed_bytes()))})
    conn.execute(
        "INSERT INTO chain_checkpoints (n, size, ts, line) VALUES (?,?,?,?)",
        (signed.n, signed.size, signed.ts, signed.line().decode("ascii")),
    )
    return signed


@dataclass(frozen=True, slots=True)
class Published:
    """The outcome of one publish: the new checkpoint and the witness objects written."""

    checkpoint: Checkpoint
    objects: list[str]
    heartbeat: bool

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint.to_dict(), "objects": self.objects, "heartbeat": self.heartbeat}


def publish(store: Store, witness: Any, signer: Signer) -> Published:
    """Sign a new checkpoint and write it, and any checkpoint this witness has not received yet, as new objects.

    A checkpoint whose size equals the previous one is a heartbeat: it shows the log was alive and unchanged.
    """
    with store.transaction() as conn:
        previous = latest(conn)
        checkpoint = make_checkpoint(conn, signer)
    heartbeat = previous is not None and previous.size == checkpoint.size
    written: list[str] = []
    pending = store.conn.execute(
        "SELECT c.line FROM chain_checkpoints c WHERE NOT EXISTS "
        "(SELECT 1 FROM chain_published p WHERE p.witness = ? AND p.n = c.n) ORDER BY c.n",
        (witness.uri,),
    ).fetchall()
    for (line,) in pending:
        cp = Checkpoint.parse(line)
        name = cp.object_name()
        witness.put(name, cp.line() + b"\n")
        written.append(name)
        with store.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO chain_published (n, witness, object, ts) VALUES (?,?,?,?)",
                (cp.n, witness.uri, name, now_ts()),
            )
    return Published(checkpoint, written, heartbeat)


def publish_every(
    store: Store, witness: Any, signer: Signer, every: timedelta, stop: threading.Event,
    on_publish: Callable[[Published], None], count: int | None = None,
) -> int:
    """Publish now and then once per interval until `stop` is set (or `count` publishes); returns how many."""
    done = 0
    while not stop.is_set():
        on_publish(publish(store, witness, signer))
        done += 1
        if count is not None and done >= count:
            break
        stop.wait(every.total_seconds())
    return done
