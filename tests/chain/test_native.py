"""The C scan (arxctl/chain/_native.c) returns exactly what the Python scan returns, on any input.

`verify._scan_py` is the reference; `_native.scan` must agree field for field on pristine and damaged blocks,
at any start byte, with any Merkle offset, checkpoint targets, sealed agents and expectations, with both SHA-256
codes (SHA-NI and portable C). In CI the extension must have been built (`make test` requires it).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arxctl.canonical import canonical_bytes
from arxctl.chain import verify
from arxctl.chain.records import Record
from tests.chain.conftest import Logbook, build, mutate, read_export, self_hashed

native = pytest.importorskip("arxctl.chain._native") if os.environ.get("CI") != "true" else None
if native is None:
    from arxctl.chain import _native as native  # in CI a missing extension is a failure, not a skip

BACKENDS = ["portable", *(["sha-ni"] if native.backend() == "sha-ni" else [])]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    before = native.backend()
    native.use(request.param)
    yield request.param
    native.use(before)


@pytest.fixture(scope="module")
def lines(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """Record lines of a real export (the header and proof lines dropped): seqs 1-600."""
    book = build(tmp_path_factory.mktemp("native"))
    try:
        return [line for line in read_export(book.export("full.ndjson.gz")) if line.startswith(b'{"actor":')]
    finally:
        book.store.close()


def both(block: bytes | memoryview, *args: object) -> tuple[object, object]:
    return native.scan(block, *args), verify._scan_py(bytes(block), *args)


def test_in_ci_the_extension_is_built_and_used() -> None:
    assert verify.scan_backend().startswith("c/")
    if os.environ.get("CI") == "true":
        assert verify._scan is native.scan


@pytest.mark.parametrize("size", [*range(0, 260), 447, 1000, 4095, 4096, 65_537])
def test_sha256_matches_hashlib(backend: str, size: int) -> None:
    data = os.urandom(size)
    assert native.sha256(data) == hashlib.sha256(data).digest()


def test_a_whole_pristine_block(backend: str, lines: list[bytes]) -> None:
    block = b"\n".join(lines) + b"\n"
    got, want = both(block, 0, 0, [256, 400, 600, 10**30], {}, False, 1, Record.from_line(lines[0]).prev.encode())
    assert got == want
    assert got[0] == 600 and got[7] == len(block)
    assert [c[0] for c in got[6]] == [256, 400, 600]


def test_memoryview_and_bytes_agree(lines: list[bytes]) -> None:
    block = b"\n".join(lines[:50])
    args = (0, 7, [20], {}, False, None, None)
    assert native.scan(memoryview(block), *args) == native.scan(block, *args) == verify._scan_py(block, *args)


def test_long_records_and_huge_seqs(backend: str, lines: list[bytes]) -> None:
    long_record = Record.build(seq=1, ts="2026-04-01T00:00:00Z", type="decision", agent="a", actor="x",
                               body={"blob": "y" * 200_000}, prev=Record.from_line(lines[0]).prev)
    block = long_record.line().encode() + b"\n" + lines[1]
    assert native.scan(block, 0, 0, [], {}, False, None, None) == verify._scan_py(block, 0, 0, [], {}, False, None,
                                                                                     None)
    huge = lines[0].replace(b'"seq":1,', b'"seq":1234567890123456789,')
    for line in (huge, lines[0].replace(b'"seq":1,', b'"seq":01,')):
        assert both(line, 0, 0, [], {}, False, None, None)[0][0] == 0


def test_sealed_agents_end_the_run_where_python_does(backend: str, lines: list[bytes]) -> None:
    block = b"\n".join(lines[:120]) + b"\n"
    escaped = lines[5].replace(b'"agent":"', b'"agent":"\\u0063')
    for sealed in ({b"cloud-posture": 30}, {b"triage-cs-01": 1000}, {b"nobody": 1}, {b"cloud-posture": 10**6}):
        for watch in (False, True):
            assert native.scan(block, 0, 0, [], sealed, watch, None, None) == \
                verify._scan_py(block, 0, 0, [], sealed, watch, None, None)
    stop = native.scan(block, 0, 0, [], {b"cloud-posture": 30}, False, None, None)
    assert stop[0] < 120
    sealed_line = lines[6].replace(b'"type":"decision"', b'"type":"agent.sealed"')
    for line in (escaped, sealed_line):
        both_ = both(b"\n".join([*lines[:5], line, *lines[6:20]]), 0, 0, [], {b"x": 1}, True, None, None)
        assert both_[0] == both_[1]


BLOCK_EDITS = st.lists(
    st.tuples(st.sampled_from(["flip", "delete", "duplicate", "swap", "blank", "cut", "escape"]),
              st.integers(min_value=0, max_value=199), st.integers(min_value=0, max_value=100_000)),
    max_size=4,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    edits=BLOCK_EDITS,
    first=st.integers(min_value=0, max_value=150),
    start_byte=st.one_of(st.none(), st.integers(min_value=0, max_value=200_000)),
    offset=st.integers(min_value=0, max_value=2**40),
    targets=st.lists(st.integers(min_value=0, max_value=400), max_size=5),
    sealed=st.dictionaries(st.sampled_from([b"cloud-posture", b"triage-cs-01", b"x", b""]),
                           st.integers(min_value=0, max_value=700), max_size=3),
    watch_seal=st.booleans(),
    expect=st.sampled_from(["none", "right", "wrong-seq", "wrong-prev", "short-prev"]),
    final_newline=st.booleans(),
)
def test_any_block_gets_the_same_scan(
    backend: str, lines: list[bytes], edits: list[tuple[str, int, int]], first: int, start_byte: int | None,
    offset: int, targets: list[int], sealed: dict[bytes, int], watch_seal: bool, expect: str,
    final_newline: bool,
) -> None:
    out = mutate(lines[first:first + 200], edits)
    block = b"\n".join(out) + (b"\n" if final_newline else b"")
    pos = 0 if start_byte is None else start_byte % (len(block) + 1)
    head = Record.from_line(lines[first])
    expect_seq, expect_prev = {
        "none": (None, None),
        "right": (head.seq, head.prev.encode()),
        "wrong-seq": (head.seq + 1, head.prev.encode()),
        "wrong-prev": (head.seq, b"sha256:" + b"0" * 64),
        "short-prev": (head.seq, b"sha256:00"),
    }[expect]
    args = (pos, offset, targets + [offset + t for t in targets], sealed, watch_seal, expect_seq, expect_prev)
    assert native.scan(block, *args) == verify._scan_py(block, *args)


def test_bad_arguments_raise_not_crash(lines: list[bytes]) -> None:
    with pytest.raises(ValueError, match="outside the block"):
        native.scan(lines[0], len(lines[0]) + 1, 0, [], {}, False, None, None)
    with pytest.raises(TypeError):
        native.scan(lines[0], 0, 0, [], {"not": 1}, False, None, None)
    with pytest.raises(TypeError):
        native.scan(lines[0], 0, 0, [], {}, False, None, "not bytes")
    with pytest.raises(TypeError):
        native.scan(lines[0], 0, 0, [], {}, False, "1", None)
    assert native.scan(lines[0], 0, 0, [], {}, False, 10**30, None)[0] == 0
    with pytest.raises(ValueError, match="not available"):
        native.use("sha-512")


def test_verify_names_the_scan_it_uses(logbook: Logbook, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify, "_scan", verify._scan_py)
    assert verify.scan_backend() == "python"
    path: Path = logbook.export("full.ndjson.gz")
    python = verify.verify_chain(witness=logbook.witness_uri, export=path, public_keys=logbook.keys_json)
    monkeypatch.undo()
    c = verify.verify_chain(witness=logbook.witness_uri, export=path, public_keys=logbook.keys_json)
    assert python.ok and c.ok and python.to_dict() == c.to_dict()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


def _proof_limits(value: object) -> bool:
    """Whether the C test may decline to prove `value`'s canonical form (floats, long integers, escaped keys)."""
    if isinstance(value, float):
        return True
    if isinstance(value, int) and not isinstance(value, bool):
        return len(str(abs(value))) > 18
    if isinstance(value, list):
        return any(_proof_limits(v) for v in value)
    if isinstance(value, dict):
        return any(canonical_bytes(k) != b'"' + k.encode() + b'"' or _proof_limits(v) for k, v in value.items())
    return False


@settings(max_examples=500, deadline=None)
@given(value=JSON, edit=st.integers(min_value=0, max_value=7), at=st.integers(min_value=0, max_value=10_000))
def test_the_c_canonical_test_never_accepts_what_the_parser_would_rewrite(value: object, edit: int, at: int) -> None:
    text = canonical_bytes(value)
    if not _proof_limits(value):
        assert native.canonical(text), text
    i = at % (len(text) + 1)
    edited = [
        text[:i] + b" " + text[i:], text[:i] + b"\\" + text[i:], text[:i] + b"," + text[i:],
        text.replace(b":", b": ", 1), text.replace(b",", b",,", 1), text[:i] + text[i + 1:],
        text[:i] + bytes([(text[i] if i < len(text) else 0) ^ 0x80]) + text[i + 1:], text + b"\n",
    ][edit]
    if native.canonical(edited):
        assert canonical_bytes(orjson.loads(edited)) == edited, edited


@pytest.mark.parametrize("text", [
    b'{"a":1,"a":2}', b'{"b":1,"a":2}', b'{"a": 1}', b' {}', b'{}\n', b'-0', b'01', b'1.0', b'1e5', b'"\\/"',
    b'"\\u000a"', b'"\\u0041"', b'"\\u001F"', b'"\xff"', b'"\xed\xa0\x80"', b'"\xc0\xaf"', b'[1,]', b'{"a":}',
    b'tru', b'nul', b'"abc', b'[' * 65 + b']' * 65, b'12345678901234567890',
])
def test_the_c_canonical_test_declines(text: bytes) -> None:
    assert not native.canonical(text)


def test_a_float_leaves_the_c_scan_and_verifies_the_same(lines: list[bytes]) -> None:
    head = Record.from_line(lines[0])
    floaty = Record.build(seq=1, ts=head.ts, type=head.type, agent=head.agent, actor=head.actor,
                          body={**head.body, "score": 0.5}, prev=head.prev).line().encode()
    block = floaty + b"\n"
    assert native.scan(block, 0, 0, [], {}, False, None, None)[0] == 0
    assert verify._scan_py(block, 0, 0, [], {}, False, None, None)[0] == 1
    assert verify.verify_lines([floaty]).ok


def test_without_the_extension_the_verdict_is_the_same(logbook: Logbook) -> None:
    """ARXCTL_NO_NATIVE=1 (what an install without a C compiler runs): same result, problems included."""
    lines = read_export(logbook.export("full.ndjson.gz"))
    lines[300] = lines[300].replace(b'"verdict":"ALLOW"', b'"verdict":"DENY"')
    del lines[420]
    path = logbook.tmp / "tampered.ndjson.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    script = ("import sys, orjson; from arxctl.chain import verify; "
              "r = verify.verify_chain(witness=sys.argv[1], export=sys.argv[2], public_keys=sys.argv[3], workers=2); "
              "sys.stdout.buffer.write(orjson.dumps([verify.scan_backend(), r.to_dict()]))")
    args = [sys.executable, "-c", script, logbook.witness_uri, str(path), str(logbook.keys_json)]
    python = orjson.loads(subprocess.run(args, env={**os.environ, "ARXCTL_NO_NATIVE": "1"}, capture_output=True,
                                         check=True, timeout=120).stdout)
    c = orjson.loads(subprocess.run(args, capture_output=True, check=True, timeout=120).stdout)
    assert python[0] == "python" and c[0].startswith("c/")
    assert python[1] == c[1]
    assert {p["kind"] for p in c[1]["problems"]} >= {"hash_mismatch", "missing"}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(at=st.integers(min_value=0, max_value=10_000), edit=st.sampled_from(
    [b" ", b"\t", b"\\u0041", b"0", b"-0", b"1.0", b'"a":1,', b"\xc3", b"\xc3\xa9", b"\\/", b"\\n"]))
def test_a_line_hashed_as_written_but_not_canonical_ends_the_c_run_like_the_python_one(
    backend: str, lines: list[bytes], at: int, edit: bytes,
) -> None:
    """Bytes inserted anywhere in the body of record 3, its hash recomputed over them: where the scan ends."""
    body = lines[2].index(b'"body":{') + 8
    end = lines[2].index(b',"hash":')
    i = body + at % (end - body)
    edited = self_hashed(lines[2][:i] + edit + lines[2][i:])
    block = b"\n".join([*lines[:2], edited, *lines[3:10]]) + b"\n"
    args = (0, 0, [], {}, False, None, None)
    got = native.scan(block, *args)
    assert got == verify._scan_py(block, *args) or (
        got[0] == 2 and not native.canonical(edited) and verify._canonical(edited))  # C declines, parser accepts
    if got[0] == 2:
        assert not native.canonical(edited)
