"""Verification of the chain: records, links, Merkle roots, signatures and the witness history.

Everything streams; every problem is reported with the seq (or checkpoint) it concerns, and checking goes
on after the first one.
"""

from __future__ import annotations

import bisect
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

import orjson

from arxctl.canonical import canonical_bytes
from arxctl.chain.checkpoints import Checkpoint, prefix
from arxctl.chain.keys import Keyring, keyring_from_store, load_keyring
from arxctl.chain.merkle import EMPTY_ROOT, verify_consistency, verify_inclusion
from arxctl.chain.records import FIELDS, GENESIS, record_hash
from arxctl.chain.witness import WitnessObject, open_witness
from arxctl.errors import InputError

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
_GENESIS = GENESIS.encode()
_CHUNK = 1 << 20


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


def read_chunks(path: Path, problems: list[Problem]) -> Iterator[list[bytes]]:
    """Lines of a gzip (one or more members) or plain NDJSON file, in chunks; damage becomes a problem."""
    try:
        handle = open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise InputError(f"{path}: cannot read the export: {exc.strerror}") from None
    with handle:
        head = handle.read(2)
        handle.seek(0)
        rest = b""
        if head != b"\x1f\x8b":
            while block := handle.read(_CHUNK * 4):
                lines = (rest + block).split(b"\n")
                rest = lines.pop()
                yield lines
        else:
            inflater = zlib.decompressobj(31)
            new_member = False
            offset = 0
            while data := handle.read(_CHUNK):
                while data:
                    if new_member:
                        if not data.startswith(b"\x1f\x8b"):
                            problems.append(
                                Problem(None, "garbage", f"bytes after the compressed stream at byte {offset}")
                            )
                            data = b""
                            break
                        inflater = zlib.decompressobj(31)
                        new_member = False
                    try:
                        out = inflater.decompress(data, _CHUNK * 8)
                    except zlib.error as exc:
                        problems.append(
                            Problem(None, "garbage", f"the compressed stream is damaged near byte {offset}: {exc}")
                        )
                        data = b""
                        break
                    if out:
                        lines = (rest + out).split(b"\n")
                        rest = lines.pop()
                        yield lines
                    if inflater.eof:
                        offset += len(data) - len(inflater.unused_data)
                        data = inflater.unused_data
                        new_member = True
                    else:
                        offset += len(data) - len(inflater.unconsumed_tail)
                        data = inflater.unconsumed_tail
                if problems and problems[-1].kind == "garbage":
                    break
            if not new_member and not (problems and problems[-1].kind == "garbage"):
                problems.append(Problem(None, "truncated", "the compressed stream ends before its end marker"))
        if rest:
            yield [rest]


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
                    seq = int(digits)
                    h = raw[i + 9:i + 80]
                    prev = raw[i + 90:i + 161]
                    if sha256(raw[:i] + raw[i + 81:]).hexdigest().encode() != raw[i + 16:i + 80]:
                        problem(Problem(seq, "hash_mismatch",
                                        f"line {lineno}: stored hash {h.decode(errors='replace')} is not the "
                                        "SHA-256 of the record"))
                    if raw.endswith(_SEALED_END) or self.sealed:
                        self._seal_check(raw, seq, lineno)
            if seq < 0:
                parsed = self._slow(raw, lineno)
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

    def _slow(self, raw: bytes, lineno: int) -> tuple[int, bytes, bytes] | None:
        """Full parse for a line the fast path could not read; None when it is not a record at all."""
        guess = self.last_seq + 1
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
            self.problem(seq, "hash_mismatch", f"line {lineno}: stored hash {record['hash']} is not the SHA-256 "
                                               "of the record")
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
    *, witness_bucket: str | None = None, arx_export: str | Path | None = None,
) -> ChainVerification:
    """Verify an export file against a witness, offline: no database, no network beyond reading the witness.

    `witness_bucket` and `arx_export` are accepted as aliases of `witness` and `export`.
    """
    witness = witness if witness is not None else witness_bucket
    export = export if export is not None else arx_export
    if export is None:
        raise InputError("verify_chain needs an export file (export=...)")
    keyring = _keyring(public_keys)
    engine = _Engine(keyring)
    file_problems: list[Problem] = []
    chunks = read_chunks(Path(export), file_problems)
    first = next(chunks, [])
    lineno = 0
    if first:
        doc = engine.header(first[0])
        if doc is not None:
            first = first[1:]
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
    else:
        engine.problem(None, "truncated", "the export is empty")
    lineno = engine.feed(first, lineno)
    for chunk in chunks:
        lineno = engine.feed(chunk, lineno)
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
        for line in chain.iter_line_bytes(conn):
            batch.append(line)
            if len(batch) >= 10_000:
                lineno = engine.feed(batch, lineno)
                batch = []
        engine.feed(batch, lineno)
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
