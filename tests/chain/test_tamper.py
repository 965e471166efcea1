"""The tamper catalogue: every alteration of a real export or its witness is caught and localized."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest

from arxctl.chain import verify_chain
from arxctl.chain.checkpoints import Checkpoint
from arxctl.chain.keys import FileSigner, encode_sig
from arxctl.chain.records import Record
from arxctl.chain.verify import ChainVerification
from tests.chain.conftest import Logbook, read_export, write_export

FIELDS = ("actor", "agent", "body", "hash", "prev", "seq", "ts", "type")
FORK_400 = "fork"


def check(book: Logbook, path: Path, **kwargs: object) -> ChainVerification:
    return verify_chain(witness=book.witness_uri, export=path, public_keys=book.keys_json, **kwargs)


def kinds(result: ChainVerification) -> list[tuple[int | None, str]]:
    return [(p.seq, p.kind) for p in result.problems]


def flags(result: ChainVerification) -> tuple[bool, bool, bool, bool, bool]:
    return (result.ok, result.tip_matches_witness, result.no_gaps, result.signatures_valid,
            result.consistent_with_witness_history)


def test_pristine_full_export_verifies(logbook: Logbook) -> None:
    result = check(logbook, logbook.export("full.ndjson.gz"))
    assert result.to_dict() == {
        "ok": True, "tip_matches_witness": True, "no_gaps": True, "signatures_valid": True,
        "consistent_with_witness_history": True, "records": 600, "problems": [],
    }
    assert result.checkpoints == 3


def test_pristine_partial_export_verifies(logbook: Logbook) -> None:
    path = logbook.export("agent.ndjson.gz", agent="cloud-posture", since="2026-04-02T00:00:00Z")
    lines = read_export(path)
    records = [line for line in lines if not line.startswith(b'{"arx_export"')]
    assert len(records) == 167
    result = check(logbook, path)
    assert flags(result) == (True, True, True, True, True)
    assert result.records == 167
    assert result.complete is False


def _flip(line: bytes, field: str) -> bytes:
    marker = f'"{field}":'.encode()
    i = line.index(marker) + len(marker) + 2
    return line[:i] + bytes([line[i] ^ 1]) + line[i + 1:]


EXPECTED_FLIPS = {
    "actor": [(300, "hash_mismatch")],
    "agent": [(300, "hash_mismatch")],
    "body": [(300, "hash_mismatch")],
    "hash": [(300, "hash_mismatch"), (301, "broken_link")],
    "prev": [(300, "hash_mismatch"), (300, "broken_link")],
    "seq": [(301, "hash_mismatch"), (301, "reordered"), (300, "missing")],
    "ts": [(300, "hash_mismatch")],
    "type": [(300, "hash_mismatch")],
}


@pytest.mark.parametrize("field", FIELDS)
def test_flipping_one_byte_in_any_field_is_caught_at_that_record(logbook: Logbook, field: str) -> None:
    lines = read_export(logbook.export("full.ndjson.gz"))
    assert lines[300].startswith(b'{"actor":"gateway"') and b'"seq":300,' in lines[300]
    lines[300] = _flip(lines[300], field)
    result = check(logbook, write_export(logbook.tmp / "t.gz", lines))
    assert kinds(result) == [*EXPECTED_FLIPS[field], (None, "manifest_mismatch"), (257, "fork")]
    assert result.problems[-1].detail.startswith("records 257..400 are not the witnessed history")
    assert (result.ok, result.tip_matches_witness, result.signatures_valid) == (False, False, True)


def test_edited_witness_checkpoint(logbook: Logbook) -> None:
    name = sorted((logbook.tmp / "witness").rglob("*.json"))[1]
    original = Checkpoint.parse(name.read_bytes())
    os.chmod(name, 0o644)
    name.write_bytes(original.line().replace(original.root.encode(), b"sha256:" + b"0" * 64) + b"\n")
    result = check(logbook, logbook.export("full.ndjson.gz"))
    assert kinds(result) == [(None, "bad_signature"), (None, "checkpoint_fork")]
    assert result.problems[0].detail == "checkpoint n=2: signature by test-key does not verify"
    assert result.problems[1].detail == "checkpoint n=3 does not link to checkpoint n=2"
    renamed = name.with_name(name.name.replace("-000000000400-", "-000000000401-"))
    name.rename(renamed)
    assert kinds(check(logbook, logbook.export("again.ndjson.gz"))) == [
        (None, "checkpoint_malformed"), (None, "checkpoint_missing"),
    ]


def test_deleted_record(logbook: Logbook) -> None:
    lines = read_export(logbook.export("full.ndjson.gz"))
    del lines[300]
    result = check(logbook, write_export(logbook.tmp / "t.gz", lines))
    assert kinds(result) == [
        (300, "missing"), (None, "manifest_mismatch"), (None, "manifest_mismatch"), (257, "fork"),
    ]
    assert result.problems[0].detail == "seq 300 missing (before line 301)"
    assert flags(result) == (False, False, False, True, False)


def test_duplicated_record(logbook: Logbook) -> None:
    lines = read_export(logbook.export("full.ndjson.gz"))
    lines.insert(301, lines[300])
    result = check(logbook, write_export(logbook.tmp / "t.gz", lines))
    assert kinds(result) == [
        (300, "duplicate"), (None, "manifest_mismatch"), (None, "manifest_mismatch"), (257, "fork"),
    ]
    assert result.problems[0].detail == "line 302: seq 300 appears more than once"


def test_reordered_records(logbook: Logbook) -> None:
    lines = read_export(logbook.export("full.ndjson.gz"))
    lines[300], lines[301] = lines[301], lines[300]
    result = check(logbook, write_export(logbook.tmp / "t.gz", lines))
    assert kinds(result) == [(301, "reordered"), (None, "manifest_mismatch"), (257, "fork")]
    assert result.problems[0].detail == "line 301: seq 301 found where seq 300 was expected"


def test_record_moved_far_back(logbook: Logbook) -> None:
    lines = read_export(logbook.export("full.ndjson.gz"))
    moved = lines.pop(300)
    lines.insert(320, moved)
    result = check(logbook, write_export(logbook.tmp / "t.gz", lines))
    assert kinds(result) == [(300, "reordered"), (None, "manifest_mismatch"), (257, "fork")]


def test_truncated_mid_line(logbook: Logbook) -> None:
    lines = read_export(logbook.export("full.ndjson.gz"))
    kept = [*lines[:451], lines[451][:100]]
    result = check(logbook, write_export(logbook.tmp / "t.gz", kept, end=b""))
    assert kinds(result) == [(451, "malformed"), (452, "missing"), (None, "truncated"), (401, "fork")]
    assert result.problems[1].detail == "seq 452..600 missing (at the end)"


def test_truncated_compressed_file(logbook: Logbook) -> None:
    path = logbook.export("full.ndjson.gz")
    data = path.read_bytes()
    cut = logbook.tmp / "cut.gz"
    cut.write_bytes(data[: len(data) // 2])
    readable = zlib.decompressobj(31).decompress(data[: len(data) // 2])
    partial_seq = readable.count(b"\n")
    assert 257 < partial_seq < 400
    result = check(logbook, cut)
    assert kinds(result) == [
        (partial_seq, "malformed"), (None, "truncated"), (partial_seq + 1, "missing"), (None, "truncated"),
        (257, "fork"),
    ]
    assert result.problems[1].detail == "the compressed stream ends before its end marker"
    assert result.problems[3].detail == "the export ends without its trailer line"


def test_appended_garbage(logbook: Logbook) -> None:
    lines = read_export(logbook.export("full.ndjson.gz"))
    result = check(logbook, write_export(logbook.tmp / "t.gz", [*lines, b"\x00garbage{"]))
    assert kinds(result) == [(None, "garbage")]
    assert result.problems[0].detail == "line 603: content after the export trailer"
    raw = logbook.tmp / "raw.gz"
    raw.write_bytes(logbook.export("full2.ndjson.gz").read_bytes() + b"not gzip at all")
    assert kinds(check(logbook, raw)) == [(None, "garbage")]


def _forked_tail(lines: list[bytes], start: int) -> list[bytes]:
    """Replace records start.. with a different, internally valid history of the same size."""
    out = list(lines)
    prev = Record.from_line(out[start - 1]).hash
    for seq in range(start, 601):
        original = Record.from_line(out[seq])
        forged = Record.build(seq=seq, ts=original.ts, type=original.type, agent=original.agent,
                              actor=original.actor, body={**original.body, "verdict": "DENY"}, prev=prev)
        out[seq] = forged.line().encode()
        prev = forged.hash
    return out


def test_forked_tail_of_the_same_size(logbook: Logbook) -> None:
    lines = _forked_tail(read_export(logbook.export("full.ndjson.gz")), 401)
    result = check(logbook, write_export(logbook.tmp / "t.gz", lines))
    assert kinds(result) == [(None, "manifest_mismatch"), (401, "fork")]
    assert flags(result) == (False, False, True, True, False)


def test_forged_checkpoint_signed_by_an_unknown_key(logbook: Logbook) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    lines = _forked_tail(read_export(logbook.export("full.ndjson.gz")), 401)
    real = Checkpoint.parse(next((logbook.tmp / "witness").rglob("0000000003-*.json")).read_bytes())
    rogue = ed25519.Ed25519PrivateKey.generate()
    from arxctl.chain.merkle import leaf_hash, root_of

    root = root_of([leaf_hash(line) for line in lines[1:601]])
    forged = Checkpoint(**{**real.to_dict(), "n": 4, "root": "sha256:" + root.hex(), "prev": real.digest(),
                           "tip": Record.from_line(lines[600]).hash, "key_id": "rogue", "sig": ""})
    forged = Checkpoint(**{**forged.to_dict(), "sig": encode_sig(rogue.sign(forged.signed_bytes()))})
    logbook.witness.put(forged.object_name(), forged.line() + b"\n")
    result = check(logbook, write_export(logbook.tmp / "t.gz", lines))
    assert kinds(result) == [
        (None, "unknown_key"), (None, "checkpoint_fork"), (None, "manifest_mismatch"), (401, "fork"),
    ]
    assert result.problems[0].detail.startswith("checkpoint n=4: signed by key 'rogue', which is not in the keyring")
    assert result.signatures_valid is False


def test_removed_witness_checkpoint(logbook: Logbook) -> None:
    path = logbook.export("full.ndjson.gz")
    next((logbook.tmp / "witness").rglob("0000000002-*.json")).unlink()
    result = check(logbook, path)
    assert kinds(result) == [(None, "checkpoint_missing")]
    assert result.problems[0].detail == "checkpoint n=2 is missing from the witness"
    assert flags(result) == (False, True, True, True, False)


def test_witness_rolled_back_by_removing_the_newest(logbook: Logbook) -> None:
    path = logbook.export("full.ndjson.gz")
    next((logbook.tmp / "witness").rglob("0000000003-*.json")).unlink()
    result = check(logbook, path)
    assert kinds(result) == [(None, "witness_rollback")]
    assert result.tip_matches_witness is False


def test_witness_rolled_back_to_a_smaller_tree(logbook: Logbook) -> None:
    path = logbook.export("full.ndjson.gz")
    files = (logbook.tmp / "witness").rglob("*.json")
    cps = sorted((Checkpoint.parse(p.read_bytes()) for p in files), key=lambda c: c.n)
    old, last = cps[1], cps[2]
    signer = FileSigner("test-key", logbook.store.directory / "keys" / "test-key.pem")
    rolled = Checkpoint(**{**old.to_dict(), "n": 4, "prev": last.digest(), "ts": "2026-04-14T12:05:00Z"})
    rolled = Checkpoint(**{**rolled.to_dict(), "sig": encode_sig(signer.sign(rolled.signed_bytes()))})
    logbook.witness.put(rolled.object_name(), rolled.line() + b"\n")
    result = check(logbook, path)
    assert kinds(result) == [(None, "witness_rollback")]
    assert result.problems[0].detail == "checkpoint n=4 has size 400, smaller than an earlier checkpoint's 600"


def test_tampered_partial_export_is_localized(logbook: Logbook) -> None:
    path = logbook.export("agent.ndjson.gz", agent="cloud-posture")
    lines = read_export(path)
    index = next(i for i, line in enumerate(lines) if b'"seq":300,' in line)
    edited = list(lines)
    edited[index] = _flip(edited[index], "body")
    result = check(logbook, write_export(logbook.tmp / "t.gz", edited))
    assert kinds(result) == [(300, "hash_mismatch"), (300, "inclusion_failed"), (None, "manifest_mismatch")]
    removed = [*lines[:index], *lines[index + 2:]]
    result = check(logbook, write_export(logbook.tmp / "r.gz", removed))
    assert kinds(result) == [(None, "manifest_mismatch"), (None, "manifest_mismatch"), (300, "missing")]


def test_unknown_and_absent_keys_are_reported_not_raised(logbook: Logbook) -> None:
    path = logbook.export("full.ndjson.gz")
    other = logbook.tmp / "other.json"
    other.write_text('{"keys": []}')
    result = verify_chain(witness=logbook.witness_uri, export=path, public_keys=other)
    assert [p.kind for p in result.problems] == ["unknown_key"] * 5
    assert result.signatures_valid is False
    alias = verify_chain(witness_bucket=logbook.witness_uri, arx_export=str(path), public_keys=logbook.keys_json)
    assert alias.ok is True
