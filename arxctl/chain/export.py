"""Exporting the chain (or a filtered part of it) as gzip NDJSON with the proofs an auditor needs."""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from arxctl.canonical import canonical_bytes
from arxctl.chain import checkpoints as cps
from arxctl.chain import store as chain
from arxctl.chain.keys import Signer, encode_sig
from arxctl.chain.merkle import CompactRange, consistency_proof, inclusion_proof, leaf_hash
from arxctl.clock import format_ts, now_ts, parse_ts
from arxctl.errors import InputError, StateError
from arxctl.store.sqlite import Store

FORMAT = 1
META = b'{"arx_export":'


def meta_line(kind: str, **fields: Any) -> bytes:
    """A non-record line of an export (header, inclusion, consistency, trailer)."""
    return canonical_bytes({"arx_export": kind, **fields})


def trailer_signed_bytes(trailer: dict[str, Any]) -> bytes:
    """What the trailer's signature covers: every field but `sig` and `seqs` (which `seqs_digest` covers)."""
    return canonical_bytes({k: v for k, v in trailer.items() if k not in ("sig", "seqs")})


def seqs_digest(ranges: Any) -> str:
    return "sha256:" + hashlib.sha256(canonical_bytes(ranges)).hexdigest()


@dataclass(frozen=True, slots=True)
class ExportSummary:
    """What an export wrote."""

    path: Path
    records: int
    complete: bool
    checkpoint: cps.Checkpoint
    unwitnessed: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "records": self.records, "complete": self.complete,
            "checkpoint": {"n": self.checkpoint.n, "size": self.checkpoint.size, "root": self.checkpoint.root},
            "unwitnessed": self.unwitnessed,
        }


def _bound(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_ts(text)
    except ValueError:
        raise InputError(f"{option} {text!r} is not an RFC 3339 timestamp (e.g. 2026-04-14T00:00:00Z)") from None


def export(
    store: Store, out: Path, signer: Signer, *, agent: str | None = None, since: str | None = None,
    until: str | None = None,
) -> ExportSummary:
    """Write records up to the latest checkpoint; a filtered export carries an inclusion proof per record.

    The file is written to a temporary name and renamed, so nothing half-written is ever left at `out`.
    """
    start, end = _bound(since, "--since"), _bound(until, "--until")
    if start and end and start >= end:
        raise InputError(f"--since {since} is not before --until {until}")
    conn = store.conn
    conn.execute("BEGIN")
    try:
        anchor = cps.latest(conn)
        if anchor is None:
            raise StateError("no checkpoint yet: run `arxctl chain publish --witness URI` first")
        complete = agent is None and start is None and end is None
        total = chain.size(conn)
        sealed = chain.sealed_agents(conn)
        retention = {
            name: {"class": cls, "sealed_seq": seq}
            for name, (seq, cls) in sorted(sealed.items())
            if (agent is None or name == agent) and seq <= anchor.size
        }
        header = meta_line(
            "header", format=FORMAT, log=anchor.log, created=now_ts(), complete=complete,
            filter={"agent": agent, "since": format_ts(start) if start else None,
                    "until": format_ts(end) if end else None},
            checkpoint=anchor.to_dict(), retention=retention,
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        temp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        tree = chain.StoredTree(conn)
        exported = CompactRange()
        ranges: list[list[int]] = []
        try:
            with open(temp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
                gz.write(header + b"\n")
                for seq, line in _selected(conn, agent, start, end, anchor.size):
                    gz.write(line + b"\n")
                    exported.append(leaf_hash(line))
                    if ranges and ranges[-1][1] == seq - 1:
                        ranges[-1][1] = seq
                    else:
                        ranges.append([seq, seq])
                    if not complete:
                        path = inclusion_proof(seq - 1, anchor.size, tree.subtree)
                        gz.write(meta_line("inclusion", index=seq - 1, size=anchor.size,
                                           path=[h.hex() for h in path]) + b"\n")
                if not complete:
                    sizes = sorted({c.size for c in cps.all_checkpoints(conn) if 0 < c.size < anchor.size})
                    for m in sizes:
                        path = consistency_proof(m, anchor.size, tree.subtree)
                        gz.write(meta_line("consistency", **{"from": m}, to=anchor.size,
                                           path=[h.hex() for h in path]) + b"\n")
                trailer: dict[str, Any] = {
                    "arx_export": "trailer", "log": anchor.log,
                    "header": "sha256:" + hashlib.sha256(header).hexdigest(),
                    "records": exported.size, "seqs": ranges, "seqs_digest": seqs_digest(ranges),
                    "root": "sha256:" + exported.root().hex(),
                    "ts": now_ts(), "key_id": signer.key_id,
                }
                trailer["sig"] = encode_sig(signer.sign(trailer_signed_bytes(trailer)))
                gz.write(canonical_bytes(trailer) + b"\n")
            with open(temp, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(temp, out)
        finally:
            temp.unlink(missing_ok=True)
    finally:
        conn.execute("COMMIT")
    return ExportSummary(out, exported.size, complete, anchor, max(0, total - anchor.size))


def _selected(
    conn: Any, agent: str | None, start: datetime | None, end: datetime | None, last: int
):
    for seq, line in chain.iter_seq_lines(conn, agent=agent, end=last):
        if start is not None or end is not None:
            ts = parse_ts(_ts_of(line))
            if start is not None and ts < start:
                continue
            if end is not None and ts >= end:
                continue
        yield seq, line


def _ts_of(line: bytes) -> str:
    import orjson

    return orjson.loads(line)["ts"]
