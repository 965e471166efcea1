"""Fixtures for the audit chain: a populated store with a key, a file witness and real exports."""

from __future__ import annotations

import gzip
import hashlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from arxctl.chain import checkpoints as cps
from arxctl.chain import keys
from arxctl.chain import store as chain
from arxctl.chain.export import export
from arxctl.chain.witness import FileWitness
from arxctl.store.sqlite import Store

SIZES = (256, 400, 600)


def entries(start: int, count: int) -> list[chain.Entry]:
    """Deterministic decision-like entries alternating between two agents."""
    out = []
    for i in range(start, start + count):
        agent = "triage-cs-01" if i % 3 else "cloud-posture"
        out.append(chain.Entry(
            type="decision", agent=agent, actor="gateway",
            body={"decision_id": f"d-{i}", "action": "servicenow.change.close", "verdict": "ALLOW", "score": i % 97},
            ts=f"2026-04-{1 + i // 100:02d}T10:{(i // 60) % 60:02d}:{i % 60:02d}Z",
        ))
    return out


@dataclass
class Logbook:
    """A store with records, a signing key, checkpoints in a file witness and the auditor's key file."""

    store: Store
    witness: FileWitness
    keys_json: Path
    tmp: Path

    @property
    def witness_uri(self) -> str:
        return self.witness.uri

    def signer(self) -> keys.Signer:
        return keys.signer(self.store.conn, self.store.directory)

    def export(self, name: str, **filters: str) -> Path:
        path = self.tmp / name
        export(self.store, path, self.signer(), **filters)
        return path


def build(tmp: Path, sizes: tuple[int, ...] = SIZES) -> Logbook:
    store = Store(tmp / "state")
    with store.transaction() as conn:
        keys.generate(conn, store.directory, key_id="test-key", ts="2026-01-01T00:00:00Z")
    witness = FileWitness(tmp / "witness")
    book = Logbook(store, witness, tmp / "keys.json", tmp)
    done = 0
    for size in sizes:
        with store.transaction() as conn:
            chain.append_many(conn, entries(done + 1, size - done))
        done = size
        cps.publish(store, witness, book.signer())
    book.keys_json.write_bytes(orjson.dumps(keys.export_public(store.conn)))
    return book


@pytest.fixture
def logbook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Logbook]:
    monkeypatch.setenv("ARX_NOW", "2026-04-14T12:00:00Z")
    book = build(tmp_path)
    yield book
    book.store.close()


def read_export(path: Path) -> list[bytes]:
    return gzip.decompress(path.read_bytes()).split(b"\n")[:-1]


def write_export(path: Path, lines: list[bytes], end: bytes = b"\n") -> Path:
    path.write_bytes(gzip.compress(b"\n".join(lines) + end, mtime=0))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server on loopback (S3 with Object Lock, KMS) for the whole session."""
    from moto.server import ThreadedMotoServer

    mp = pytest.MonkeyPatch()
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        mp.setenv(name, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    mp.setenv("AWS_ENDPOINT_URL", endpoint)
    yield endpoint
    server.stop()
    mp.undo()


def mutate(lines: list[bytes], ops: list[tuple[str, int, int]]) -> list[bytes]:
    """Lines edited by `ops` (op, line index, salt): flip a bit, delete, duplicate, swap with the next, insert a
    blank line, cut short, or insert a copy with a backslash in it."""
    out = list(lines)
    for op, at, salt in ops:
        if not out:
            break
        at %= len(out)
        if op == "flip" and out[at]:
            i = salt % len(out[at])
            out[at] = out[at][:i] + bytes([out[at][i] ^ (1 + salt % 127)]) + out[at][i + 1:]
        elif op == "delete":
            del out[at]
        elif op == "duplicate":
            out.insert(at, out[at])
        elif op == "swap" and at + 1 < len(out):
            out[at], out[at + 1] = out[at + 1], out[at]
        elif op == "blank":
            out.insert(at, b"")
        elif op == "cut":
            out[at] = out[at][: salt % (len(out[at]) + 1)]
        elif op == "escape":
            out.insert(at, out[at][: salt % 50] + b"\\" + out[at][salt % 50:])
    return out


def self_hashed(line: bytes) -> bytes:
    """The line with its stored hash replaced by the SHA-256 of its own bytes (so only other checks can fail)."""
    i = line.rindex(b',"hash":"sha256:')
    return line[:i + 16] + hashlib.sha256(line[:i] + line[i + 81:]).hexdigest().encode() + line[i + 80:]
