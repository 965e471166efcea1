"""Verification of the chain: records, links, Merkle roots, signatures and the witness history.

Everything streams; every problem is reported with the seq (or checkpoint) it concerns, and checking goes
on after the first one.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import mmap
import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from hashlib import sha256
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import orjson

from arxctl import ndjson
from arxctl.canonical import canonical_bytes
from arxctl.chain.checkpoints import Checkpoint, prefix
from arxctl.chain.keys import Keyring, keyring_from_store, load_keyring
from arxctl.chain.merkle import EMPTY_ROOT, verify_consistency, verify_inclusion
from arxctl.chain.records import FIELDS, GENESIS, record_hash
from arxctl.chain.witness import WitnessObject, open_witness
from arxctl.errors import InputError

try:
    from arxctl.chain import _native
except ImportError:  # built without a C compiler: the same scan in Python
    _native = None  # type: ignore[assignment]
if os.environ.get("ARXCTL_NO_NATIVE") == "1":
    _native = None  # type: ignore[assignment]

SIGNATURE_KINDS = frozenset({"bad_signature", "unknown_key", "key_not_valid"})
HISTORY_KINDS = frozenset({
    "checkpoint_fork", "checkpoint_missing", "witness_rollback", "witness_overwritten", "witness_deleted",
    "fork", "checkpoint_malformed",
})
_META = b'{"arx_export":'
_ACTOR = b'{"actor":'
_HASH = b',"hash":"sha256:'
_PREV = b'","prev":"'
_SEQ = b'","seq":'
_SEALED_END = b'"type":"agent.sealed"}'
_SEALED = b'"agent.sealed"'
_AGENT = b'","agent":"'
_MAX_DIGITS = 18
"""Longer seqs leave the bulk scan (the C scan reads them as 64-bit integers)."""
_GENESIS = GENESIS.encode()
_READ = 1 << 18
_INFLATE = 1 << 21
_SLOT = 8 << 20
"""Blocks up to this size go to worker processes through shared memory; larger ones are checked in place."""
_WORKER_DEADLINE_S = 300.0
_MARKERS_SEARCHED = 16
"""Up to this many sealed agents, lines are searched for their names before being parsed for a seal check."""
_HLEN = 71
"""Bytes of a hash as records write it: "sha256:" and 64 hex digits."""
_EMPTY_HASH = sha256()
_LEAF_HASH = sha256(b"\x00")


@dataclass(slots=True)
class Problem:
    """One thing wrong, localized: a record's seq (None for checkpoint- or file-level problems)."""

    seq: int | None
    kind: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "detail": self.detail}


@dataclass(slots=True)
class ChainVerification:
    """The outcome of verifying a chain against its witness (formats.md section 8)."""

    records: int = 0
    tip: str = GENESIS
    tip_matches_witness: bool = False
    no_gaps: bool = True
    signatures_valid: bool = False
    consistent_with_witness_history: bool = True
    problems: list[Problem] = field(default_factory=list)
    checkpoints: int = 0
    keys_source: str = ""
    complete: bool = True

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "tip_matches_witness": self.tip_matches_witness,
            "no_gaps": self.no_gaps,
            "signatures_valid": self.signatures_valid,
            "consistent_with_witness_history": self.consistent_with_witness_history,
            "records": self.records,
            "problems": [p.to_dict() for p in self.problems],
        }


VerifyResult = ChainVerification


@dataclass(frozen=True, slots=True)
class Block:
    """Whole lines of an export: `head` (the end of a line begun in the previous read) then `data[:end]`."""

    head: bytes
    data: bytes
    end: int

    def __len__(self) -> int:
        return len(self.head) + self.end

    def text(self) -> bytes:
        if not self.head:
            return self.data if self.end == len(self.data) else self.data[:self.end]
        return self.head + memoryview(self.data)[:self.end]

    def lines(self) -> int:
        """How many lines the block holds (a final line without a newline counts)."""
        newlines = self.head.count(b"\n") + _newlines(self.data, self.end)
        last = self.data[self.end - 1:self.end] if self.end else self.head[-1:]
        return newlines + (last not in (b"\n", b""))

    def copy_into(self, target: mmap.mmap, start: int) -> None:
        cut = start + len(self.head)
        target[start:cut] = self.head
        target[cut:cut + self.end] = memoryview(self.data)[:self.end]


def _reuse_heap_for_blocks() -> None:
    """Free a buffer bigger than a block, so glibc serves blocks from its heap, not fresh pages (inflates 2x faster)."""
    buffer = bytearray(4 * _INFLATE)
    del buffer


def read_blocks(path: Path, problems: list[Problem]) -> Iterator[Block]:
    """A gzip (one or more members) or plain NDJSON file in blocks of whole lines; damage becomes a problem.

    Every block but the last ends with a newline and holds at least one line.
    """
    try:
        handle = open(path, "rb", buffering=0)  # noqa: SIM115
    except OSError as exc:
        raise InputError(f"{path}: cannot read the export: {exc.strerror}") from None
    _reuse_heap_for_blocks()
    with handle:
        rest = b""
        try:
            for out in ndjson.Chunks(handle, read_size=_READ, chunk_size=_INFLATE):
                cut = out.rfind(b"\n") + 1
                if cut:
                    yield Block(rest, out, cut)
                    rest = out[cut:]
                else:
                    rest += out
        except ndjson.GzipDamage as exc:
            problems.append(Problem(None, "truncated" if exc.kind == "truncated" else "garbage", str(exc)))
        if rest:
            yield Block(b"", rest, len(rest))


def split_lines(block: bytes) -> list[bytes]:
    """The lines of a block from `read_blocks` (a final newline ends the last line, it does not start another)."""
    lines = block.split(b"\n")
    if not lines[-1]:
        lines.pop()
    return lines


class _Engine:
    """The streaming checks over record lines, export meta lines and the witness history."""

    def __init__(self, keyring: Keyring | None) -> None:
        self.keyring = keyring
        self.problems: list[Problem] = []
        self.result = ChainVerification(keys_source=keyring.source if keyring else "")
        self.complete = True
        self.anchor: Checkpoint | None = None
        self.header_raw: bytes | None = None
        self.trailer: dict[str, Any] | None = None
        self.trailer_line = 0
        self.signatures_checked = 0
        self.count = 0
        self.last_seq = 0
        self.last_hash: bytes | None = _GENESIS
        self.stack: list[bytes] = []
        self.targets: list[int] = []
        self.roots: dict[int, tuple[bytes, bytes | None]] = {}
        self.missing: list[list[int]] = []
        self.recent: dict[int, bytes] = {}
        self.pending_links: dict[int, tuple[bytes, int, int]] = {}
        self.early: dict[int, bytes] = {}
        self.jump: tuple[int, bytes, bytes, int, int, bytes | None] | None = None
        self.sealed: dict[bytes, int] = {}
        self.seal_markers: list[bytes] = []
        self.ranges: list[list[int]] = []
        self.partial_stack: list[bytes] = []
        self.partial_count = 0
        self.awaiting_proof: tuple[int, bytes, int] | None = None
        self.inclusion_failures = 0
        self.consistency: dict[int, list[bytes]] = {}
        self.history: list[Checkpoint] = []
        self.witness_lines: dict[int, set[bytes]] = {}
        self.trusted: set[bytes] = set()

    def problem(self, seq: int | None, kind: str, detail: str) -> None:
        self.problems.append(Problem(seq, kind, detail))

    # ---- records -------------------------------------------------------------------------------------------

    def feed(self, lines: list[bytes], lineno: int) -> int:
        """Check a chunk of lines; returns the number of the last line read."""
        problem = self.problems.append
        stack = self.stack
        targets = self.targets
        next_target = targets[0] if targets else -1
        count = self.count
        last_seq = self.last_seq
        last_hash = self.last_hash
        complete = self.complete
        for raw in lines:
            lineno += 1
            if not raw:
                continue
            if self.trailer is not None:
                problem(Problem(None, "garbage", f"line {lineno}: content after the export trailer"))
                continue
            if raw.startswith(_META):
                self.count, self.last_seq, self.last_hash = count, last_seq, last_hash
                self.meta(raw, lineno)
                count, last_seq, last_hash = self.count, self.last_seq, self.last_hash
                next_target = targets[0] if targets else -1
                continue
            i = raw.rfind(_HASH)
            seq = -1
            if (i > 0 and raw[i + 80:i + 90] == _PREV and raw[i + 161:i + 169] == _SEQ
                    and raw.startswith(_ACTOR) and raw.endswith(b'"}')):
                j = raw.find(b",", i + 169)
                digits = raw[i + 169:j]
                if digits.isdigit() and (digits[0] != 48 or len(digits) == 1):
                    h = raw[i + 9:i + 80]
                    matches = sha256(raw[:i] + raw[i + 81:]).hexdigest().encode() == raw[i + 16:i + 80]
                    if not matches or _canonical(raw):  # else the hash covers bytes that are not canonical
                        seq = int(digits)               # JSON: the full parse below reports it
                        prev = raw[i + 90:i + 161]
                        if not matches:
                            problem(Problem(seq, "hash_mismatch",
                                            f"line {lineno}: stored hash {h.decode(errors='replace')} is not the "
                                            "SHA-256 of the record"))
                        if ((raw.endswith(_SEALED_END) or self.sealed)
                                and _seal_candidate(raw, self.seal_markers)):
                            self._seal_check(raw, seq, lineno)
            if seq < 0:
                parsed = self._slow(raw, lineno, last_seq + 1)
                if parsed is None:
                    last_seq += 1
                    last_hash = None
                    seq = -1
                else:
                    seq, prev, h = parsed
            if seq >= 0:
                if seq == last_seq + 1 and self.jump is None and complete:
                    if last_hash is not None and prev != last_hash:
                        problem(Problem(seq, "broken_link",
                                        f"line {lineno}: prev {prev.decode(errors='replace')} is not the hash of "
                                        f"seq {seq - 1}"))
                    last_seq = seq
                    last_hash = h
                else:
                    self.count, self.last_seq, self.last_hash = count, last_seq, last_hash
                    self._irregular(seq, prev, h, lineno)
                    count, last_seq, last_hash = self.count, self.last_seq, self.last_hash
            leaf = sha256(b"\x00" + raw).digest()
            if not complete:
                self._partial_record(seq, leaf, lineno)
            n = count
            node = leaf
            while n & 1:
                node = sha256(b"\x01" + stack.pop() + node).digest()
                n >>= 1
            stack.append(node)
            count += 1
            if count == next_target:
                self.count, self.last_hash = count, last_hash
                self._capture()
                next_target = targets[0] if targets else -1
        self.count, self.last_seq, self.last_hash = count, last_seq, last_hash
        return lineno

    def take(self, block: bytes, lineno: int, start: int = 0, stop: int | None = None) -> int:
        """Check the lines of `block[start:stop]`: runs of regular records in bulk, every other line through `feed`.

        `block` is not copied (the C scan reads it through a memoryview bounded at `stop`).
        """
        size = len(block) if stop is None else stop
        if not self.complete:
            return self.feed(split_lines(block[start:size]), lineno)
        if _scan is _scan_py:
            if size != len(block):
                block, start, size = block[start:size], 0, size - start
            view: bytes | memoryview = block
            watch_seal = _SEALED in block
        else:
            view = block if size == len(block) else memoryview(block)[:size]
            watch_seal = True  # the C scan looks for seal records itself
        pos = start
        while pos < size:
            if self.trailer is not None:
                return self.feed(split_lines(block[pos:size]), lineno)
            if self.jump is None:
                scan = _scan(view, pos, self.count, self.targets, self.sealed, watch_seal, self.last_seq + 1,
                             self.last_hash)
                done = self.settle(scan, self.count, self.sealed)
                if done:
                    pos = scan[7]
                    lineno += done
                    if pos >= size:
                        break
            end = block.find(b"\n", pos, size)
            end = size if end < 0 else end
            lineno = self.feed([block[pos:end]], lineno)
            pos = end + 1
        return lineno

    def take_block(self, block: Block, lineno: int) -> int:
        """`take` for a block of `read_blocks`: its first line (begun in the previous read) apart, the rest in place."""
        if not block.head:
            return self.take(block.data, lineno, 0, block.end)
        cut = block.data.find(b"\n", 0, block.end) + 1 or block.end
        lineno = self.take(block.head + block.data[:cut], lineno)
        return self.take(block.data, lineno, cut, block.end) if cut < block.end else lineno

    def settle(self, scan: _ScanResult, offset: int, sealed: dict[bytes, int]) -> int:
        """Take a scanned run of regular records if it continues the chain exactly here; returns how many it took."""
        p, seq0, prev0, last_h, emitted, local, captures, _ = scan
        if (not p or self.trailer is not None or not self.complete or self.jump is not None or self.count != offset
                or seq0 != self.last_seq + 1 or (self.last_hash is not None and prev0 != self.last_hash)
                or sealed != self.sealed):
            return 0
        end = offset + p
        due = list(itertools.takewhile(lambda t: t <= end, self.targets))
        if due != [c[0] for c in captures]:
            return 0
        stack = self.stack
        for _, taken, snapshot, tip in captures:
            frontier = list(stack)
            size = offset
            for level, node in emitted[:taken]:
                size = _push(frontier, size, level, node)
            frontier.extend(snapshot)
            self.roots[self.targets.pop(0)] = (_fold(frontier), tip)
        size = offset
        for level, node in emitted:
            size = _push(stack, size, level, node)
        stack.extend(local)
        self.count = end
        self.last_seq = seq0 + p - 1
        self.last_hash = last_h
        return p

    def _slow(self, raw: bytes, lineno: int, guess: int) -> tuple[int, bytes, bytes] | None:
        """Full parse for a line the fast path could not read (`guess`: the seq due); None when not a record."""
        try:
            record = orjson.loads(raw)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
            missing = [f for f in FIELDS if f not in record]
            if missing:
                raise ValueError(f"missing field(s) {', '.join(missing)}")
            seq = record["seq"]
            if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
                raise ValueError("seq is not a positive integer")
            if not isinstance(record["hash"], str) or not isinstance(record["prev"], str):
                raise ValueError("hash and prev must be strings")
        except (orjson.JSONDecodeError, ValueError) as exc:
            self.problem(guess, "malformed", f"line {lineno}: unreadable record (expected seq {guess}): {exc}")
            return None
        if record_hash(record) != record["hash"]:
            note = "" if canonical_bytes(record) == raw else (
                " (and the line is not its canonical JSON: duplicate or unsorted keys, spaces, or another form of "
                "a number or string)")
            self.problem(seq, "hash_mismatch", f"line {lineno}: stored hash {record['hash']} is not the SHA-256 "
                                               f"of the record{note}")
        elif canonical_bytes(record) != raw:
            self.problem(seq, "not_canonical", f"line {lineno}: the record's bytes are not its canonical JSON")
        if record.get("type") == "agent.sealed" or self.sealed:
            self._seal_check(raw, seq, lineno, record)
        return seq, record["prev"].encode(), record["hash"].encode()

    def _seal_check(self, raw: bytes, seq: int, lineno: int, record: dict[str, Any] | None = None) -> None:
        if record is None:
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError:
                return
        if not isinstance(record, dict):
            return
        agent = record.get("agent")
        if not isinstance(agent, str):
            return
        key = agent.encode()
        sealed_at = self.sealed.get(key)
        if sealed_at is not None and seq > sealed_at:
            self.problem(seq, "after_seal", f"line {lineno}: a record for agent {agent!r}, sealed at seq {sealed_at}")
        if record.get("type") == "agent.sealed" and sealed_at is None:
            self.sealed[key] = seq
            self.seal_markers.append(b'"' + key + b'"')

    def _irregular(self, seq: int, prev: bytes, h: bytes, lineno: int) -> None:
        """Out-of-sequence records: gaps, reorders, duplicates; partial exports link only neighbours."""
        if not self.complete:
            if seq == self.last_seq + 1 and self.last_hash is not None and prev != self.last_hash:
                self.problem(seq, "broken_link", f"line {lineno}: prev is not the hash of seq {seq - 1}")
            if seq <= self.last_seq:
                kind = "duplicate" if _in_ranges(self.ranges, seq) else "reordered"
                self.problem(seq, kind, f"line {lineno}: seq {seq} after seq {self.last_seq}")
                return
            self.last_seq, self.last_hash = seq, h
            return
        if self.jump is not None:
            j_seq, j_hash, j_prev, j_line, before_seq, before_hash = self.jump
            self.jump = None
            if seq == before_seq + 1:
                self.problem(j_seq, "reordered", f"line {j_line}: seq {j_seq} found where seq {before_seq + 1} "
                                                 "was expected")
                self.early[j_seq] = j_hash
                self.pending_links[j_seq - 1] = (j_prev, j_seq, j_line)
                self.last_seq, self.last_hash = before_seq, before_hash
            elif seq == before_seq + 2:
                self.problem(j_seq, "reordered", f"line {j_line}: seq {j_seq} found where seq {before_seq + 1} "
                                                 "was expected")
                self.missing.append([before_seq + 1, before_seq + 1, j_line])
                self.last_seq, self.last_hash = before_seq + 1, None
            else:
                self.missing.append([before_seq + 1, j_seq - 1, j_line])
                self.pending_links[j_seq - 1] = (j_prev, j_seq, j_line)
        while self.last_seq + 1 in self.early:
            self.last_seq += 1
            self.last_hash = self.early.pop(self.last_seq)
        if seq in self.early:
            self.problem(seq, "duplicate", f"line {lineno}: seq {seq} appears more than once")
            return
        if seq == self.last_seq + 1:
            if self.last_hash is not None and prev != self.last_hash:
                self.problem(seq, "broken_link", f"line {lineno}: prev is not the hash of seq {seq - 1}")
            self._settle(seq, h)
            self.last_seq, self.last_hash = seq, h
            return
        if seq > self.last_seq + 1:
            self.recent[self.last_seq] = self.last_hash or b""
            self.jump = (seq, h, prev, lineno, self.last_seq, self.last_hash)
            self.last_seq, self.last_hash = seq, h
            return
        found = _take_from_ranges(self.missing, seq)
        if found:
            self.problem(seq, "reordered", f"line {lineno}: seq {seq} found after seq {self.last_seq}")
            pred = self.recent.get(seq - 1)
            if pred is not None and pred and prev != pred:
                self.problem(seq, "broken_link", f"line {lineno}: prev is not the hash of seq {seq - 1}")
            self._settle(seq, h)
            self.recent[seq] = h
        else:
            self.problem(seq, "duplicate", f"line {lineno}: seq {seq} appears more than once")

    def _settle(self, seq: int, h: bytes) -> None:
        waiting = self.pending_links.pop(seq, None)
        if waiting is not None and waiting[0] != h:
            self.problem(waiting[1], "broken_link", f"line {waiting[2]}: prev is not the hash of seq {seq}")

    def _capture(self) -> None:
        size = self.targets.pop(0)
        self.roots[size] = (_fold(self.stack), self.last_hash)

    # ---- partial exports -----------------------------------------------------------------------------------

    def _partial_record(self, seq: int, leaf: bytes, lineno: int) -> None:
        if self.awaiting_proof is not None:
            self._no_proof()
        self.awaiting_proof = (seq, leaf, lineno)
        if seq >= 0:
            if self.ranges and self.ranges[-1][1] == seq - 1:
                self.ranges[-1][1] = seq
            elif not _in_ranges(self.ranges, seq):
                self.ranges.append([seq, seq])
        n = self.partial_count
        node = leaf
        while n & 1:
            node = sha256(b"\x01" + self.partial_stack.pop() + node).digest()
            n >>= 1
        self.partial_stack.append(node)
        self.partial_count += 1

    def _no_proof(self) -> None:
        seq, _, lineno = self.awaiting_proof or (None, b"", 0)
        self.awaiting_proof = None
        self.inclusion_failures += 1
        self.problem(seq, "inclusion_failed", f"line {lineno}: no inclusion proof follows the record")

    # ---- meta lines ----------------------------------------------------------------------------------------

    def meta(self, raw: bytes, lineno: int) -> None:
        try:
            doc = orjson.loads(raw)
            kind = doc["arx_export"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.problem(None, "malformed", f"line {lineno}: unreadable export line")
            return
        if kind == "inclusion":
            self._inclusion(doc, lineno)
        elif kind == "consistency":
            try:
                self.consistency[int(doc["from"])] = [bytes.fromhex(x) for x in doc["path"]]
            except (KeyError, TypeError, ValueError):
                self.problem(None, "malformed", f"line {lineno}: unreadable consistency proof")
        elif kind == "trailer":
            if self.awaiting_proof is not None:
                self._no_proof()
            self.trailer = doc
            self.trailer_line = lineno
        elif kind == "header":
            self.problem(None, "malformed", f"line {lineno}: a second export header")
        else:
            self.problem(None, "malformed", f"line {lineno}: unknown export line {kind!r}")

    def _inclusion(self, doc: dict[str, Any], lineno: int) -> None:
        if self.awaiting_proof is None:
            self.problem(None, "malformed", f"line {lineno}: an inclusion proof with no record before it")
            return
        seq, leaf, _ = self.awaiting_proof
        self.awaiting_proof = None
        anchor = self.anchor
        try:
            index, size = int(doc["index"]), int(doc["size"])
            path = [bytes.fromhex(x) for x in doc["path"]]
        except (KeyError, TypeError, ValueError):
            self.inclusion_failures += 1
            self.problem(seq, "inclusion_failed", f"line {lineno}: unreadable inclusion proof")
            return
        if anchor is None or size != anchor.size or index != seq - 1 or not verify_inclusion(
            index, size, leaf, path, anchor.root_bytes()
        ):
            self.inclusion_failures += 1
            self.problem(seq, "inclusion_failed",
                         f"line {lineno}: the record is not proven to be leaf {seq - 1} of the checkpointed tree")

    def header(self, raw: bytes) -> dict[str, Any] | None:
        """Read the export header; None (with a problem) when the first line is not one."""
        if not raw.startswith(_META):
            self.problem(None, "malformed", "line 1: the export has no header line")
            return None
        try:
            doc = orjson.loads(raw)
            if doc.get("arx_export") != "header":
                raise ValueError("not a header")
            self.anchor = Checkpoint.parse(doc["checkpoint"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            self.problem(None, "malformed", f"line 1: unreadable export header: {exc}")
            return None
        self.header_raw = raw
        self.complete = bool(doc.get("complete"))
        self.result.complete = self.complete
        return doc

    # ---- signatures and the witness ------------------------------------------------------------------------

    def check_signature(self, what: str, key_id: str, ts: str, message: bytes, sig: str) -> bool:
        self.signatures_checked += 1
        if self.keyring is None:
            self.problem(None, "unknown_key", f"{what}: no public keys to check {key_id!r} against")
            return False
        issue = self.keyring.check(key_id, ts, message, sig)
        if issue is None:
            return True
        self.problem(None, issue[0], f"{what}: {issue[1]}")
        return False

    def witness_history(self, objects: list[WitnessObject], log: str) -> None:
        """Check the published checkpoints among themselves: signatures, numbering, links, sizes, forks."""
        by_n: dict[int, list[Checkpoint]] = {}
        flagged: set[str] = set()
        for obj in objects:
            if obj.delete_markers and obj.name not in flagged:
                self.problem(None, "witness_deleted", f"{obj.name}: {obj.delete_markers} delete marker(s) hide it")
            if obj.versions > 1 and obj.name not in flagged:
                self.problem(None, "witness_overwritten", f"{obj.name}: {obj.versions} versions under one key")
            flagged.add(obj.name)
            if obj.data is None:
                continue
            try:
                cp = Checkpoint.parse(obj.data)
            except (orjson.JSONDecodeError, ValueError) as exc:
                self.problem(None, "checkpoint_malformed", f"{obj.name}: {exc}")
                continue
            if cp.log != log or cp.object_name() != obj.name:
                self.problem(None, "checkpoint_malformed", f"{obj.name}: holds checkpoint n={cp.n} of log {cp.log}")
                continue
            if self.check_signature(f"checkpoint n={cp.n}", cp.key_id, cp.ts, cp.signed_bytes(), cp.sig):
                self.trusted.add(cp.line())
            versions = by_n.setdefault(cp.n, [])
            if all(v.line() != cp.line() for v in versions):
                versions.append(cp)
        self.witness_lines = {n: {c.line() for c in v} for n, v in by_n.items()}
        if not by_n:
            return
        top = max(by_n)
        gaps = _runs([n for n in range(1, top + 1) if n not in by_n])
        for a, b in gaps:
            which = f"n={a}" if a == b else f"n={a}..{b}"
            self.problem(None, "checkpoint_missing", f"checkpoint {which} is missing from the witness")
        roots_by_size: dict[int, str] = {}
        previous: Checkpoint | None = None
        biggest = 0
        for n in sorted(by_n):
            versions = by_n[n]
            if len(versions) > 1:
                self.problem(None, "checkpoint_fork", f"checkpoint n={n} exists in {len(versions)} different versions")
            for cp in versions:
                known = roots_by_size.setdefault(cp.size, cp.root)
                if known != cp.root:
                    self.problem(None, "checkpoint_fork",
                                 f"checkpoint n={n}: size {cp.size} with root {cp.root}, another checkpoint has "
                                 f"{known}")
                if cp.size < biggest:
                    self.problem(None, "witness_rollback",
                                 f"checkpoint n={n} has size {cp.size}, smaller than an earlier checkpoint's {biggest}")
                if previous is not None and previous.n == n - 1 and cp.prev != previous.digest():
                    self.problem(None, "checkpoint_fork", f"checkpoint n={n} does not link to checkpoint n={n - 1}")
            biggest = max(biggest, *(c.size for c in versions))
            previous = versions[0]
            self.history.extend(versions)
        self.result.checkpoints = len(self.history)

    def set_targets(self, sizes: Iterable[int]) -> None:
        self.targets = sorted({s for s in sizes if s > 0})
        if 0 in set(sizes):
            self.roots[0] = (EMPTY_ROOT, _GENESIS)

    # ---- the verdict ---------------------------------------------------------------------------------------

    def finish(self, *, export: bool, witness_used: bool) -> ChainVerification:
        result = self.result
        if self.jump is not None:
            j_seq, _, _, j_line, before_seq, _ = self.jump
            self.missing.append([before_seq + 1, j_seq - 1, j_line])
            self.jump = None
        anchor = self.anchor
        if self.complete and anchor is not None and self.last_seq < anchor.size:
            self.missing.append([self.last_seq + 1, anchor.size, 0])
        for a, b, line in self.missing:
            if a > b:
                continue
            where = f"before line {line}" if line else "at the end"
            self.problem(a, "missing", f"seq {a}" + (f"..{b}" if b > a else "") + f" missing ({where})")
        if self.complete and self.missing:
            result.no_gaps = False
        if export:
            self._check_trailer()
        if anchor is not None:
            self._check_anchor(witness_used)
        if self.complete:
            self._check_history_roots()
        else:
            self._check_history_proofs()
        result.records = self.count if self.complete else self.partial_count
        result.tip = (self.last_hash or b"").decode(errors="replace") if self.count else GENESIS
        kinds = {p.kind for p in self.problems}
        if kinds & {"missing", "duplicate", "reordered", "malformed", "truncated"}:
            result.no_gaps = False
        result.signatures_valid = self.signatures_checked > 0 and not kinds & SIGNATURE_KINDS
        result.consistent_with_witness_history = not kinds & HISTORY_KINDS
        if result.tip_matches_witness and kinds & {"hash_mismatch", "broken_link", "inclusion_failed", "fork"}:
            result.tip_matches_witness = False
        result.problems = self.problems
        return result

    def _check_trailer(self) -> None:
        trailer = self.trailer
        if trailer is None:
            self.problem(None, "truncated", "the export ends without its trailer line")
            return
        where = f"line {self.trailer_line}"
        header_digest = "sha256:" + sha256(self.header_raw or b"").hexdigest()
        if trailer.get("header") != header_digest:
            self.problem(None, "manifest_mismatch", f"{where}: the header is not the one the trailer signed")
        records = self.count if self.complete else self.partial_count
        if trailer.get("records") != records:
            self.problem(None, "manifest_mismatch", f"{where}: the trailer lists {trailer.get('records')} records, "
                                                    f"the export holds {records}")
        root = _fold(self.stack if self.complete else self.partial_stack)
        if trailer.get("root") != "sha256:" + root.hex():
            self.problem(None, "manifest_mismatch", f"{where}: the exported lines are not the ones the trailer signed")
        if not self.complete:
            listed = trailer.get("seqs") if isinstance(trailer.get("seqs"), list) else []
            for a, b in _ranges_minus(listed, self.ranges):
                self.problem(a, "missing", f"seq {a}" + (f"..{b}" if b > a else "") + " listed by the trailer but "
                                                                                  "not in the export")
                self.result.no_gaps = False
            for a, b in _ranges_minus(self.ranges, listed):
                self.problem(a, "manifest_mismatch", f"seq {a}" + (f"..{b}" if b > a else "") +
                             " in the export but not listed by the trailer")
        from arxctl.chain.export import seqs_digest, trailer_signed_bytes

        if trailer.get("seqs_digest") != seqs_digest(trailer.get("seqs")):
            self.problem(None, "manifest_mismatch", f"{where}: the trailer's seq list is not the one it signed")
        try:
            message = trailer_signed_bytes(trailer)
            self.check_signature("export trailer", str(trailer["key_id"]), str(trailer["ts"]), message,
                                 str(trailer["sig"]))
        except KeyError as exc:
            self.problem(None, "bad_signature", f"{where}: the trailer lacks {exc}")

    def _check_anchor(self, witness_used: bool) -> None:
        anchor = self.anchor
        assert anchor is not None
        signed = self.check_signature(f"checkpoint n={anchor.n}", anchor.key_id, anchor.ts, anchor.signed_bytes(),
                                      anchor.sig)
        in_witness = True
        if witness_used:
            lines = self.witness_lines.get(anchor.n)
            if lines is None:
                in_witness = False
                self.problem(None, "witness_rollback",
                             f"checkpoint n={anchor.n} (size {anchor.size}), which this chain was checked against, "
                             "is not in the witness: the witness was rolled back or the checkpoint removed")
            elif anchor.line() not in lines:
                in_witness = False
                self.problem(None, "checkpoint_fork",
                             f"checkpoint n={anchor.n} in the witness differs from the one this chain carries")
        if self.complete:
            got = self.roots.get(anchor.size)
            matches = got is not None and got[0] == anchor.root_bytes() and (got[1] or b"").decode() == anchor.tip
        else:
            matches = self.inclusion_failures == 0
        self.result.tip_matches_witness = witness_used and in_witness and signed and matches

    def _check_history_roots(self) -> None:
        """Full chains: the roots recomputed at every checkpointed size must be the witnessed ones."""
        limit = self.anchor.size if self.anchor is not None else self.count
        witnessed = [cp for cp in self.history if cp.size <= limit and cp.line() in self.trusted]
        if self.anchor is not None:
            witnessed.append(self.anchor)
        matched = 0
        for cp in sorted(witnessed, key=lambda c: (c.size, c.n)):
            got = self.roots.get(cp.size)
            if got is not None and got[0] == cp.root_bytes() and (got[1] or b"").decode() == cp.tip:
                matched = cp.size
                continue
            self.problem(matched + 1, "fork",
                         f"records {matched + 1}..{cp.size} are not the witnessed history: they do not hash to "
                         f"checkpoint n={cp.n}'s root {cp.root}")
            return

    def _check_history_proofs(self) -> None:
        anchor = self.anchor
        if anchor is None:
            return
        for cp in self.history:
            if not 0 < cp.size < anchor.size or cp.line() not in self.trusted:
                continue
            path = self.consistency.get(cp.size)
            if path is None or not verify_consistency(cp.size, anchor.size, cp.root_bytes(), anchor.root_bytes(),
                                                      path):
                self.problem(None, "fork",
                             f"checkpoint n={cp.n} (size {cp.size}) is not proven consistent with checkpoint "
                             f"n={anchor.n}")


def _fold(stack: list[bytes]) -> bytes:
    if not stack:
        return EMPTY_ROOT
    root = stack[-1]
    for h in reversed(stack[:-1]):
        root = sha256(b"\x01" + h + root).digest()
    return root


_ScanResult = tuple[
    int, int, bytes, bytes, list[tuple[int, bytes]], list[bytes], list[tuple[int, int, tuple[bytes, ...], bytes]], int
]
"""A run of regular records: count, first seq, first prev, last hash, Merkle summary, roots at target sizes, end."""


def _scan_py(
    block: bytes, pos: int, offset: int, targets: Iterable[int], sealed: dict[bytes, int], watch_seal: bool,
    expect_seq: int | None, expect_prev: bytes | None,
) -> _ScanResult:
    """Hash and link-check the longest run of regular records of `block` from byte `pos`, as leaves from `offset`.

    A regular record is one `_Engine.feed` would accept on its fast path without a problem or a seal to note
    (`_seal_stop` ends the run a little earlier than needed in rare cases: that line then goes through `feed`).
    The Merkle summary: complete subtrees that join the tree left of `offset` (`emitted`, with their level) and
    the right frontier of the run (`local`); `captures` snapshot both at each target size inside the run; `end`
    is the byte after the run. `arxctl/chain/_native.c` is the same function in C; tests hold the two equal.
    """
    local: list[bytes] = []
    emitted: list[tuple[int, bytes]] = []
    captures: list[tuple[int, int, tuple[bytes, ...], bytes]] = []
    pop = local.pop
    push = local.append
    new_record = _EMPTY_HASH.copy
    new_leaf = _LEAF_HASH.copy
    upcoming = iter(sorted({t for t in targets if t > offset}))
    next_target = next(upcoming, -1)
    count = offset
    seq = seq0 = -1
    prev0 = last_h = b""
    link = b""
    start = end = pos
    size = len(block)
    if expect_prev is not None and len(expect_prev) != _HLEN:
        return 0, -1, b"", b"", [], [], [], start
    while pos < size:
        newline = block.find(b"\n", pos)
        raw = block[pos:size if newline < 0 else newline]
        i = raw.rfind(_HASH)
        if i <= 0 or not raw.startswith(_ACTOR) or not raw.endswith(b'"}'):
            break
        if link:
            if raw[i + 80:i + 80 + len(link)] != link:
                break
            candidate = seq + 1
        else:
            if not raw.startswith(_PREV, i + 80) or not raw.startswith(_SEQ, i + 161):
                break
            comma = raw.find(b",", i + 169)
            digits = raw[i + 169:comma]
            if (comma < 0 or not digits.isdigit() or len(digits) > _MAX_DIGITS
                    or (digits[0] == 48 and len(digits) != 1)):
                break
            candidate = int(digits)
            if ((expect_seq is not None and candidate != expect_seq)
                    or (expect_prev is not None and raw[i + 90:i + 161] != expect_prev)):
                break
        record = new_record()
        record.update(raw[:i])
        record.update(raw[i + 81:])
        if record.hexdigest().encode() != raw[i + 16:i + 80] or not _canonical(raw):
            break
        if _seal_stop(raw, candidate, sealed, watch_seal):
            break
        seq = candidate
        if not link:
            seq0, prev0 = seq, raw[i + 90:i + 161]
        last_h = raw[i + 9:i + 80]
        link = b'","prev":"%s","seq":%d,' % (last_h, seq + 1)
        leaf = new_leaf()
        leaf.update(raw)
        node = leaf.digest()
        n = count
        level = 0
        while n & 1 and local:
            node = sha256(b"\x01" + pop() + node).digest()
            n >>= 1
            level += 1
        if n & 1:
            emitted.append((level, node))
        else:
            push(node)
        count += 1
        pos = end = size if newline < 0 else newline + 1
        if count == next_target:
            captures.append((count, len(emitted), tuple(local), last_h))
            next_target = next(upcoming, -1)
    if count == offset:
        return 0, -1, b"", b"", [], [], [], start
    return count - offset, seq0, prev0, last_h, emitted, local, captures, end


def _seal_stop(raw: bytes, seq: int, sealed: dict[bytes, int], watch_seal: bool) -> bool:
    """Whether a bulk run must end at this (canonical) record: a seal record (its type, the last key, ends the
    line), or (agents being sealed) a record for a sealed agent after its seal or one whose agent name the scan
    does not read literally (escaped, or out of place)."""
    if watch_seal and raw.endswith(_SEALED_END):
        return True
    if not sealed:
        return False
    if raw[9:10] != b'"':
        return True
    close = raw.find(b'"', 10)
    if close < 0 or b"\\" in raw[10:close] or not raw.startswith(_AGENT, close):
        return True
    start = close + len(_AGENT)
    close = raw.find(b'"', start)
    if close < 0 or b"\\" in raw[start:close]:
        return True
    at = sealed.get(raw[start:close])
    return at is not None and seq > at


_scan: Callable[..., _ScanResult] = _scan_py if _native is None else _native.scan
"""The bulk scan: C when built (ARXCTL_NO_NATIVE=1 makes it Python), Python otherwise."""


def _canonical(raw: bytes) -> bool:
    """Whether a record line is its own canonical JSON: the C test proves it for nearly every line, the full
    parser decides the rest (floats, escaped keys, long integers) and every line when C is not built."""
    if _native is not None and _native.canonical(raw):
        return True
    try:
        return canonical_bytes(orjson.loads(raw)) == raw
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        return False


def _count_newlines(data: bytes, end: int) -> int:
    return data.count(b"\n", 0, end)


_newlines: Callable[[bytes, int], int] = _count_newlines if _native is None else _native.newlines


def scan_backend() -> str:
    """Which bulk scan `verify_chain` uses: 'c/sha-ni', 'c/portable' or 'python'."""
    return "python" if _scan is _scan_py or _native is None else f"c/{_native.backend()}"


def _may_name(text: bytes, markers: list[bytes]) -> bool:
    """False when `text` provably names none of the sealed agents (`markers`: each `"agent"` as JSON bytes).

    Without a backslash every JSON string is literal, so a sealed agent's name would appear as its marker.
    """
    return bool(markers) and (len(markers) > _MARKERS_SEARCHED or b"\\" in text or any(m in text for m in markers))


def _seal_candidate(raw: bytes, markers: list[bytes]) -> bool:
    """False when a record line provably neither seals an agent nor names a sealed one."""
    return _SEALED in raw or _may_name(raw, markers)


def _push(stack: list[bytes], size: int, level: int, node: bytes) -> int:
    """Add a complete subtree of 2**level leaves at `size` (a multiple of 2**level) to a Merkle frontier."""
    n = size >> level
    while n & 1:
        node = sha256(b"\x01" + stack.pop() + node).digest()
        n >>= 1
    stack.append(node)
    return size + (1 << level)


def default_workers() -> int:
    """Workers `verify_chain` uses by default: the CPUs this process may run on, at most 4 (one off Linux)."""
    if not sys.platform.startswith("linux"):
        return 1
    return max(1, min(4, len(os.sched_getaffinity(0))))


def _work(conn: Connection, shared: mmap.mmap) -> None:
    """A verify worker: scans blocks that the parent put in shared memory until it sends None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while (task := conn.recv()) is not None:
        start, length, offset, targets, sealed = task
        with memoryview(shared)[start:start + length] as view:
            if _scan is _scan_py:
                block = bytes(view)
                scan = _scan_py(block, 0, offset, targets, sealed, _SEALED in block, None, None)
            else:  # the C scan looks for seal records itself, faster than a search here
                scan = _scan(view, 0, offset, targets, sealed, True, None, None)
        conn.send(scan)


class _Threads:
    """Threads running the C scan, which releases the GIL, while the calling thread inflates the next blocks.

    Same contract as `_Pool`: blocks are scanned ahead and their results applied in order through `settle`.
    """

    def __init__(self, workers: int) -> None:
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="arx-verify")
        self.depth = 2 * workers
        self.pending: deque[tuple[Future[_ScanResult], memoryview, int, int, dict[bytes, int]]] = deque()
        self.lines_pending = 0

    def submit(self, engine: _Engine, block: Block, lineno: int) -> int:
        """Queue a block's scan; the block is not copied (its first line, begun in the previous read, aside)."""
        data, start = block.data, 0
        if block.head:
            start = data.find(b"\n", 0, block.end) + 1
            joint = block.head + data[:start]
            lineno = self._submit(engine, joint, 0, len(joint), lineno)
        if start < block.end:
            lineno = self._submit(engine, data, start, block.end, lineno)
        return lineno

    def _submit(self, engine: _Engine, data: bytes, start: int, end: int, lineno: int) -> int:
        if len(self.pending) == self.depth:
            lineno = self.apply_oldest(engine, lineno)
        view = memoryview(data)[start:end]
        offset = engine.count + self.lines_pending
        n = _newlines(view, end - start) + (data[end - 1] != 10)
        self.lines_pending += n
        sealed = dict(engine.sealed)
        targets = tuple(t for t in engine.targets if offset < t <= offset + n)
        future = self.executor.submit(_scan, view, 0, offset, targets, sealed, True, None, None)
        self.pending.append((future, view, offset, n, sealed))
        return lineno

    def apply_oldest(self, engine: _Engine, lineno: int) -> int:
        future, view, offset, n, sealed = self.pending.popleft()
        self.lines_pending -= n
        try:
            scan = future.result()
        except MemoryError:
            return engine.take(bytes(view), lineno)
        done = engine.settle(scan, offset, sealed)
        if done == n:
            return lineno + done
        return engine.take(bytes(view), lineno + done, scan[7] if done else 0)

    def drain(self, engine: _Engine, lineno: int) -> int:
        while self.pending:
            lineno = self.apply_oldest(engine, lineno)
        return lineno

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


class _Pool:
    """Worker processes fed through a ring of shared-memory slots; results are applied in block order."""

    def __init__(self, workers: int) -> None:
        context = multiprocessing.get_context("fork")
        self.slots = 2 * workers
        self.shared = mmap.mmap(-1, self.slots * _SLOT)
        self.conns: list[Connection] = []
        self.procs: list[BaseProcess] = []
        for _ in range(workers):
            mine, theirs = context.Pipe()
            proc = context.Process(target=_work, args=(theirs, self.shared), daemon=True)
            proc.start()
            theirs.close()
            self.conns.append(mine)
            self.procs.append(proc)
        self.pending: deque[tuple[int, int, int, int, dict[bytes, int]]] = deque()
        self.ticket = 0
        self.lines_pending = 0
        self.broken = False

    def submit(self, engine: _Engine, block: Block, lineno: int) -> int:
        """Queue a block for a worker (first applying the oldest result if every slot is taken)."""
        if len(self.pending) == self.slots:
            lineno = self.apply_oldest(engine, lineno)
        ticket = self.ticket
        self.ticket += 1
        start = (ticket % self.slots) * _SLOT
        block.copy_into(self.shared, start)
        offset = engine.count + self.lines_pending
        n = block.lines()
        self.lines_pending += n
        sealed = dict(engine.sealed)
        if not self.broken:
            targets = tuple(t for t in engine.targets if offset < t <= offset + n)
            try:
                self.conns[ticket % len(self.conns)].send((start, len(block), offset, targets, sealed))
            except OSError:
                self.broken = True
        self.pending.append((ticket, offset, n, len(block), sealed))
        return lineno

    def apply_oldest(self, engine: _Engine, lineno: int) -> int:
        ticket, offset, n, length, sealed = self.pending.popleft()
        self.lines_pending -= n
        start = (ticket % self.slots) * _SLOT
        scan = self._result(ticket)
        if scan is None:
            return engine.take(self.shared[start:start + length], lineno)
        done = engine.settle(scan, offset, sealed)
        if done == n:
            return lineno + done
        return engine.take(self.shared[start:start + length], lineno + done, scan[7] if done else 0)

    def _result(self, ticket: int) -> _ScanResult | None:
        if self.broken:
            return None
        conn = self.conns[ticket % len(self.conns)]
        try:
            if conn.poll(_WORKER_DEADLINE_S):
                return conn.recv()
        except (EOFError, OSError):
            pass
        self.broken = True
        return None

    def drain(self, engine: _Engine, lineno: int) -> int:
        while self.pending:
            lineno = self.apply_oldest(engine, lineno)
        return lineno

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(None)
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
        for conn in self.conns:
            conn.close()
        self.shared.close()


def _stream(engine: _Engine, blocks: Iterable[Block], lineno: int, workers: int) -> int:
    """Check every block in order; with `workers` > 1, scans run ahead on that many threads (the C scan) or
    processes (the Python scan, Linux only) once there is more than one block to share."""
    threaded = _scan is not _scan_py
    if workers < 2 or not engine.complete or not (threaded or sys.platform.startswith("linux")):
        for block in blocks:
            lineno = engine.take_block(block, lineno)
        return lineno
    pool: _Threads | _Pool | None = None
    first = True
    try:
        for block in blocks:
            if not block:
                continue
            if first or (not threaded and len(block) > _SLOT) or engine.trailer is not None:
                first = False
                if pool is not None:
                    lineno = pool.drain(engine, lineno)
                lineno = engine.take_block(block, lineno)
                continue
            if pool is None:
                pool = _Threads(workers) if threaded else _Pool(workers)
            lineno = pool.submit(engine, block, lineno)
        if pool is not None:
            lineno = pool.drain(engine, lineno)
    finally:
        if pool is not None:
            pool.close()
    return lineno


def _in_ranges(ranges: list[list[int]], seq: int) -> bool:
    i = bisect.bisect_right(ranges, [seq, float("inf")]) - 1
    return i >= 0 and ranges[i][0] <= seq <= ranges[i][1]


def _take_from_ranges(ranges: list[list[int]], seq: int) -> bool:
    for i, r in enumerate(ranges):
        if r[0] <= seq <= r[1]:
            pieces = [p for p in ([r[0], seq - 1, r[2]], [seq + 1, r[1], r[2]]) if p[0] <= p[1]]
            ranges[i:i + 1] = pieces
            return True
    return False


def _runs(values: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for v in values:
        if runs and runs[-1][1] == v - 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def _ranges_minus(a: list[Any], b: list[list[int]]) -> list[tuple[int, int]]:
    """Ranges of seqs in `a` and not in `b` (both lists of [first, last])."""
    out: list[tuple[int, int]] = []
    for item in a:
        try:
            lo, hi = int(item[0]), int(item[1])
        except (TypeError, ValueError, IndexError):
            continue
        cur = lo
        for blo, bhi in sorted((r[0], r[1]) for r in b):
            if bhi < cur or blo > hi:
                continue
            if blo > cur:
                out.append((cur, blo - 1))
            cur = max(cur, bhi + 1)
        if cur <= hi:
            out.append((cur, hi))
    return out


def _witness_objects(witness: str | Any | None, log: str) -> list[WitnessObject] | None:
    if witness is None:
        return None
    target = open_witness(witness) if isinstance(witness, str) else witness
    return target.objects(prefix(log))


def _keyring(public_keys: str | Path | Keyring | None) -> Keyring | None:
    if public_keys is None or isinstance(public_keys, Keyring):
        return public_keys
    return load_keyring(Path(public_keys))


def verify_chain(
    witness: str | Any | None = None, export: str | Path | None = None, public_keys: str | Path | Keyring | None = None,
    *, witness_bucket: str | None = None, arx_export: str | Path | None = None, workers: int | None = None,
) -> ChainVerification:
    """Verify an export file against a witness, offline: no database, no network beyond reading the witness.

    `witness_bucket` and `arx_export` are accepted as aliases of `witness` and `export`. `workers` threads (the C
    scan) or processes (the Python scan) share the hashing while this thread inflates (default:
    `default_workers()`; 1 checks everything on this thread); the result is the same for any number.
    """
    if workers is not None and workers < 1:
        raise InputError(f"workers must be at least 1, not {workers}")
    witness = witness if witness is not None else witness_bucket
    export = export if export is not None else arx_export
    if export is None:
        raise InputError("verify_chain needs an export file (export=...)")
    keyring = _keyring(public_keys)
    engine = _Engine(keyring)
    file_problems: list[Problem] = []
    blocks = read_blocks(Path(export), file_problems)
    first = next(blocks, None)
    lineno = 0
    if first is not None:
        text = first.text()
        end = text.find(b"\n")
        doc = engine.header(text if end < 0 else text[:end])
        if doc is not None:
            text = b"" if end < 0 else text[end + 1:]
            lineno = 1
            log = str(doc.get("log", ""))
            objects = _witness_objects(witness, log)
            if keyring is None:
                engine.problem(None, "unknown_key", "no public keys given: pass --public-key keys.json")
            if objects is not None:
                engine.witness_history(objects, log)
            sizes = [c.size for c in engine.history]
            if engine.anchor is not None:
                sizes.append(engine.anchor.size)
            engine.set_targets(sizes)
        first = Block(b"", text, len(text))
    else:
        engine.problem(None, "truncated", "the export is empty")
    _stream(engine, itertools.chain((first,) if first else (), blocks), lineno,
            default_workers() if workers is None else workers)
    engine.problems.extend(file_problems)
    return engine.finish(export=True, witness_used=witness is not None)


def verify_store(
    store: Any, witness: str | Any | None = None, public_keys: str | Path | Keyring | None = None,
) -> ChainVerification:
    """Verify the local chain: records, links, the stored Merkle frontier and every checkpoint (or the witness's)."""
    from arxctl.chain import checkpoints as cps
    from arxctl.chain import store as chain

    conn = store.conn
    conn.execute("BEGIN")
    try:
        keyring = _keyring(public_keys) or keyring_from_store(conn)
        engine = _Engine(keyring)
        log = chain.log_id(conn)
        objects = _witness_objects(witness, log)
        if objects is None:
            objects = [WitnessObject(cp.object_name(), cp.line()) for cp in cps.all_checkpoints(conn)]
        engine.witness_history(objects, log)
        if engine.history:
            engine.anchor = max(engine.history, key=lambda c: (c.n, c.size))
        engine.set_targets([c.size for c in engine.history])
        lineno = 0
        batch: list[bytes] = []
        for line in itertools.chain(chain.iter_line_bytes(conn), [None]):
            if line is not None:
                batch.append(line)
            if len(batch) >= 10_000 or (line is None and batch):
                block = b"\n".join(batch) + b"\n"
                # a stored line holding a newline (a damaged row) stays one line
                lineno = (engine.take(block, lineno) if _newlines(block, len(block)) == len(batch)
                          else engine.feed(batch, lineno))
                batch = []
        stored = conn.execute("SELECT size, frontier FROM chain_merkle WHERE id = 1").fetchone()
        if stored is not None and stored[0] == engine.count and stored[1] != b"".join(engine.stack):
            engine.problem(None, "fork", "the stored Merkle frontier does not match the records")
        if engine.anchor is not None and engine.anchor.size > engine.count:
            engine.problem(None, "truncated", f"checkpoint n={engine.anchor.n} covers {engine.anchor.size} records; "
                                              f"the store holds {engine.count}")
        return engine.finish(export=False, witness_used=witness is not None)
    finally:
        conn.execute("COMMIT")


def verify_lines(lines: Iterable[str | bytes]) -> ChainVerification:
    """Recompute every hash and link of bare record lines (no witness, no checkpoints)."""
    engine = _Engine(None)
    batch = [line.encode("utf-8") if isinstance(line, str) else line for line in lines]
    engine.feed([b.rstrip(b"\r\n") for b in batch], 0)
    return engine.finish(export=False, witness_used=False)


@dataclass(slots=True)
class ChainSetVerification:
    """The outcome of verifying several logs together (one export per gateway replica) against one witness."""

    logs: list[tuple[str | None, str, ChainVerification]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(result.ok for _, _, result in self.logs)

    @property
    def records(self) -> int:
        return sum(result.records for _, _, result in self.logs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "records": self.records,
            "logs": [{"log": log, "export": export, **result.to_dict()} for log, export, result in self.logs],
            "problems": [p.to_dict() for p in self.problems],
        }


def export_log_id(export: str | Path) -> str | None:
    """The log id named by an export's header line; None when the header cannot be read."""
    blocks = read_blocks(Path(export), [])
    try:
        first = next(blocks, None)
    finally:
        blocks.close()
    if first is None:
        return None
    text = first.text()
    end = text.find(b"\n")
    try:
        header = orjson.loads(text if end < 0 else text[:end])
    except orjson.JSONDecodeError:
        return None
    log = header.get("log") if isinstance(header, dict) and header.get("arx_export") == "header" else None
    return log if isinstance(log, str) else None


def verify_chain_set(
    exports: Iterable[str | Path], witness: str | Any | None = None, public_keys: str | Path | Keyring | None = None,
    *, complete: bool = False, workers: int | None = None,
) -> ChainSetVerification:
    """Verify several logs (replicas append to their own, with no shared lock), each export against the same
    witness and keys. No log may be given twice; with `complete`, every log the witness holds checkpoints for
    must be given, so a log cannot be left out unnoticed."""
    keyring = _keyring(public_keys)
    out = ChainSetVerification()
    seen: dict[str, str] = {}
    for export in exports:
        log = export_log_id(export)
        if log is not None and log in seen:
            out.problems.append(Problem(None, "duplicate_log", f"{export} and {seen[log]} are both log {log}"))
        elif log is not None:
            seen[log] = str(export)
        out.logs.append((log, str(export), verify_chain(witness, export, keyring, workers=workers)))
    if complete:
        if witness is None:
            raise InputError("a complete check needs the witness, which lists every log")
        target = open_witness(witness) if isinstance(witness, str) else witness
        published = {o.name.split("/")[1] for o in target.objects("checkpoints/") if o.name.count("/") >= 2}
        for log in sorted(published - set(seen)):
            out.problems.append(Problem(None, "log_missing", f"the witness holds checkpoints of log {log}, "
                                                             "but no export of it was given"))
    return out
