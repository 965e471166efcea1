"""Verification on several processes and the bulk path give exactly the line-by-line verdict, problems included."""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arxctl import ndjson
from arxctl.chain import checkpoints as cps
from arxctl.chain import keys, verify
from arxctl.chain import store as chain
from arxctl.chain.export import export
from arxctl.chain.records import Record
from arxctl.chain.seal import seal
from arxctl.chain.verify import ChainVerification, verify_chain
from arxctl.chain.witness import FileWitness
from arxctl.errors import InputError
from arxctl.store.sqlite import Store
from tests.chain.conftest import Logbook, mutate, read_export, self_hashed, write_export


def outcome(result: ChainVerification) -> dict[str, Any]:
    """Everything a verification reports, details included."""
    return {**result.to_dict(), "details": [p.detail for p in result.problems], "tip": result.tip,
            "checkpoints": result.checkpoints, "complete": result.complete}


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """Inflate in tiny blocks so a few hundred records span dozens of blocks; count pools and worker results
    (threads for the C scan, processes for the Python scan)."""
    monkeypatch.setattr(verify, "_READ", 512)
    monkeypatch.setattr(verify, "_INFLATE", 4096)
    seen = {"pools": 0, "results": 0, "threads": 0, "processes": 0}
    real_init, real_result = verify._Pool.__init__, verify._Pool._result
    threads_init, threads_apply = verify._Threads.__init__, verify._Threads.apply_oldest

    def init(self: verify._Pool, workers: int) -> None:
        seen["pools"] += 1
        seen["processes"] += 1
        real_init(self, workers)

    def result(self: verify._Pool, ticket: int) -> Any:
        got = real_result(self, ticket)
        seen["results"] += got is not None
        return got

    def init_threads(self: verify._Threads, workers: int) -> None:
        seen["pools"] += 1
        seen["threads"] += 1
        threads_init(self, workers)

    def apply_threads(self: verify._Threads, engine: Any, lineno: int) -> int:
        future = self.pending[0][0]
        seen["results"] += future.exception() is None
        return threads_apply(self, engine, lineno)

    monkeypatch.setattr(verify._Pool, "__init__", init)
    monkeypatch.setattr(verify._Pool, "_result", result)
    monkeypatch.setattr(verify._Threads, "__init__", init_threads)
    monkeypatch.setattr(verify._Threads, "apply_oldest", apply_threads)
    yield seen


def _nothing_regular(block: bytes, pos: int, offset: int, *args: Any) -> Any:
    return 0, -1, b"", b"", [], [], [], pos


def line_by_line(check: Callable[[], ChainVerification], monkeypatch: pytest.MonkeyPatch) -> ChainVerification:
    """The verdict when every line goes through `_Engine.feed` (the bulk scan never accepts a run)."""
    with monkeypatch.context() as m:
        m.setattr(verify, "_scan", _nothing_regular)
        return check()


def verdicts(book: Logbook, path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Line by line, then the bulk scan in use (C when built) on 1-3 processes, then the Python scan on 1-2."""
    def check(workers: int) -> ChainVerification:
        return verify_chain(witness=book.witness_uri, export=path, public_keys=book.keys_json, workers=workers)

    reference = line_by_line(lambda: check(1), monkeypatch)
    fast = [outcome(check(w)) for w in (1, 2, 3)]
    with monkeypatch.context() as m:
        m.setattr(verify, "_scan", verify._scan_py)
        python = [outcome(check(w)) for w in (1, 2)]
    return [outcome(reference), *fast, *python]


def _flip(line: bytes, field: str) -> bytes:
    marker = f'"{field}":'.encode()
    i = line.index(marker) + len(marker) + 2
    return line[:i] + bytes([line[i] ^ 1]) + line[i + 1:]


def _relinked(lines: list[bytes], start: int, edit: Callable[[Record], dict[str, Any]]) -> list[bytes]:
    """Rewrite records start.. (list index = seq) with `edit`, re-hashed and re-linked: internally valid."""
    out = list(lines)
    prev = Record.from_line(out[start - 1]).hash
    for seq in range(start, len(out) - 1):
        original = Record.from_line(out[seq])
        fields = {**original.to_dict(), **edit(original)}
        forged = Record.build(seq=seq, ts=fields["ts"], type=fields["type"], agent=fields["agent"],
                              actor=fields["actor"], body=fields["body"], prev=prev)
        out[seq] = forged.line().encode()
        prev = forged.hash
    return out


def _each(lines: list[bytes], seqs: range, edit: Callable[[bytes], bytes]) -> list[bytes]:
    return [self_hashed(edit(line)) if i in seqs else line for i, line in enumerate(lines)]


def _wrong_prev(line: bytes) -> bytes:
    at = line.index(b'"prev":"sha256:') + 15
    return line[:at] + b"f" * 64 + line[at + 64:]


TAMPERS: dict[str, Callable[[list[bytes]], list[bytes]]] = {
    "wrong prevs, valid hashes": lambda lines: _each(lines, range(300, 331), _wrong_prev),
    "renamed prev key, valid hashes": lambda lines: _each(
        lines, range(300, 331), lambda line: line.replace(b'","prev":"', b'","PREV":"')),
    "duplicated key, valid hashes": lambda lines: _each(
        lines, range(300, 302), lambda line: line.replace(b'"verdict":"ALLOW"', b'"verdict":"ALLOW","verdict":"DENY"')),
    "spaced, valid hashes": lambda lines: _each(
        lines, range(420, 421), lambda line: line.replace(b'"body":{"action":', b'"body":{ "action":')),
    "pristine": lambda lines: lines,
    "flip body": lambda lines: [*lines[:300], _flip(lines[300], "body"), *lines[301:]],
    "flip hash": lambda lines: [*lines[:300], _flip(lines[300], "hash"), *lines[301:]],
    "flip prev": lambda lines: [*lines[:300], _flip(lines[300], "prev"), *lines[301:]],
    "flip seq": lambda lines: [*lines[:300], _flip(lines[300], "seq"), *lines[301:]],
    "flip first and last": lambda lines: [lines[0], _flip(lines[1], "body"), *lines[2:600], _flip(lines[600], "ts"),
                                          lines[601]],
    "deleted": lambda lines: [*lines[:300], *lines[301:]],
    "deleted run": lambda lines: [*lines[:100], *lines[180:]],
    "duplicated": lambda lines: [*lines[:301], lines[300], *lines[301:]],
    "swapped": lambda lines: [*lines[:300], lines[301], lines[300], *lines[302:]],
    "moved far back": lambda lines: [*lines[:300], *lines[301:320], lines[300], *lines[320:]],
    "empty line": lambda lines: [*lines[:257], b"", *lines[257:]],
    "stray meta line": lambda lines: [*lines[:200], b'{"arx_export":"inclusion","index":1}', *lines[200:]],
    "no trailer": lambda lines: lines[:-1],
    "garbage after trailer": lambda lines: [*lines, b'{"actor":"x"}'],
    "truncated mid-line": lambda lines: [*lines[:451], lines[451][:100]],
    "forked tail": lambda lines: _relinked(lines, 401, lambda r: {"body": {**r.body, "verdict": "DENY"}}),
    "checkpoint boundary": lambda lines: [*lines[:256], _flip(lines[256], "body"), *lines[257:]],
}


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_workers_and_bulk_path_match_line_by_line(
    logbook: Logbook, small_blocks: dict[str, int], monkeypatch: pytest.MonkeyPatch, tamper: str,
) -> None:
    lines = read_export(logbook.export("full.ndjson.gz"))
    path = write_export(logbook.tmp / "t.gz", TAMPERS[tamper](lines), end=b"" if "mid-line" in tamper else b"\n")
    reference, *others = verdicts(logbook, path, monkeypatch)
    assert others == [reference] * 5
    assert small_blocks["pools"] == 3
    assert small_blocks["threads"] == (2 if verify._native is not None else 0)
    assert small_blocks["results"] > 20
    assert reference["ok"] is (tamper in ("pristine", "empty line"))
    if "valid hashes" in tamper:
        kinds = {p["kind"] for p in reference["problems"] if p["seq"] is not None and 300 <= p["seq"] <= 330}
        expected = {"wrong prevs, valid hashes": {"broken_link"}, "renamed prev key, valid hashes": {"malformed"},
                    "duplicated key, valid hashes": {"hash_mismatch", "broken_link"}, "spaced, valid hashes": set()}
        assert kinds == expected[tamper]
    if tamper in ("duplicated key, valid hashes", "spaced, valid hashes"):  # hashes over non-canonical bytes
        seqs = [300, 301] if "key" in tamper else [420]
        mismatches = [p for p in reference["problems"] if p["kind"] == "hash_mismatch"]
        assert [p["seq"] for p in mismatches] == seqs
        assert all("not its canonical JSON" in p["detail"] for p in mismatches)


def test_an_unreadable_line_is_attributed_to_the_seq_due_there(logbook: Logbook) -> None:
    lines = read_export(logbook.export("full.ndjson.gz"))[1:601]
    lines[299] = lines[299].replace(b'","prev":"', b'","PREV":"')
    result = verify.verify_lines(lines)
    assert [(p.seq, p.kind, p.detail) for p in result.problems] == [
        (300, "malformed", "line 300: unreadable record (expected seq 300): missing field(s) prev"),
    ]


def test_damaged_and_truncated_streams_match(
    logbook: Logbook, small_blocks: dict[str, int], monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = logbook.export("full.ndjson.gz").read_bytes()
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 0xFF
    for name, body in (("cut.gz", data[: len(data) * 2 // 3]), ("damaged.gz", bytes(damaged)),
                       ("garbage.gz", data + b"not gzip"), ("two-members.gz", data[:-8] + data[-8:] + data)):
        path = logbook.tmp / name
        path.write_bytes(body)
        reference, *others = verdicts(logbook, path, monkeypatch)
        assert others == [reference] * 5, name
        assert reference["ok"] is False
    plain = logbook.tmp / "plain.ndjson"
    plain.write_bytes(zlib.decompress(data, 31))
    reference, *others = verdicts(logbook, plain, monkeypatch)
    assert others == [reference] * 5
    assert reference["ok"] is True


def test_zlib_fallback_gives_the_same_verdicts(logbook: Logbook, monkeypatch: pytest.MonkeyPatch) -> None:
    data = logbook.export("full.ndjson.gz").read_bytes()
    paths = []
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 0xFF
    for name, body in (("whole.gz", data), ("garbage.gz", data + b"junk"), ("two.gz", data + data),
                       ("cut.gz", data[: len(data) * 2 // 3]), ("damaged.gz", bytes(damaged))):
        paths.append(logbook.tmp / name)
        paths[-1].write_bytes(body)

    def checks() -> list[dict[str, Any]]:
        return [outcome(verify_chain(witness=logbook.witness_uri, export=p, public_keys=logbook.keys_json))
                for p in paths]

    def kinds(results: list[dict[str, Any]]) -> list[list[tuple[int | None, str]]]:
        return [[(p["seq"], p["kind"]) for p in r["problems"]] for r in results]

    fast = checks()  # ISA-L's igzip decompressor
    monkeypatch.setattr(ndjson, "_igzip", None)
    isal_zlib = checks()  # ISA-L through zlib's API
    monkeypatch.setattr(ndjson, "_inflate", zlib)
    stdlib = checks()
    assert isal_zlib[:3] == stdlib[:3] == fast[:3]  # the damaged cases differ only in the inflater's wording
    assert kinds(isal_zlib) == kinds(stdlib) == kinds(fast)
    assert [r["ok"] for r in fast] == [True, False, False, False, False]
    assert [(p["seq"], p["kind"]) for p in fast[1]["problems"]] == [(None, "garbage")]
    assert (None, "truncated") in kinds(fast)[3]
    assert (None, "garbage") in kinds(fast)[4]


def sealed_book(tmp: Path, retired: int) -> Logbook:
    """600 records: cloud-posture sealed at seq 301, `retired` more agents at 381..; some bodies quote text."""
    store = Store(tmp / "state")
    with store.transaction() as conn:
        keys.generate(conn, store.directory, key_id="test-key", ts="2026-01-01T00:00:00Z")
    witness = FileWitness(tmp / "witness")
    book = Logbook(store, witness, tmp / "keys.json", tmp)

    def entry(i: int, agent: str) -> chain.Entry:
        body = {"decision_id": f"d-{i}", "verdict": "ALLOW", "reason": f'said "ok" {i}' if i % 7 == 0 else "fine"}
        return chain.Entry(type="decision", agent=agent, actor="gateway", body=body,
                           ts=f"2026-04-{1 + i // 100:02d}T10:{(i // 60) % 60:02d}:{i % 60:02d}Z")

    with store.transaction() as conn:
        chain.append_many(conn, [entry(i, "triage-cs-01" if i % 3 else "cloud-posture") for i in range(1, 257)])
    cps.publish(store, witness, book.signer())
    with store.transaction() as conn:
        chain.append_many(conn, [entry(i, "triage-cs-01" if i % 3 else "cloud-posture") for i in range(257, 301)])
        seal(conn, "cloud-posture", "sox-7yr", "ops", "decommissioned", ts="2026-04-04T00:00:00Z")
        chain.append_many(conn, [entry(i, "triage-cs-01") for i in range(302, 401 - retired)])
        for n in range(retired):
            seal(conn, f"retired-{n:02d}", "standard-1yr", "ops", "unused", ts="2026-04-04T00:00:00Z")
    cps.publish(store, witness, book.signer())
    with store.transaction() as conn:
        chain.append_many(conn, [entry(i, "triage-cs-01") for i in range(401, 601)])
    cps.publish(store, witness, book.signer())
    book.keys_json.write_bytes(orjson.dumps(keys.export_public(store.conn)))
    return book


@pytest.mark.parametrize("retired", [0, verify._MARKERS_SEARCHED + 4])
def test_records_after_a_seal_are_caught_the_same_way(
    tmp_path: Path, small_blocks: dict[str, int], monkeypatch: pytest.MonkeyPatch, retired: int,
) -> None:
    monkeypatch.setenv("ARX_NOW", "2026-04-14T12:00:00Z")
    book = sealed_book(tmp_path, retired)
    try:
        path = book.tmp / "full.ndjson.gz"
        export(book.store, path, book.signer())
        lines = read_export(path)
        assert lines[301].endswith(b'"type":"agent.sealed"}')
        reference, *others = verdicts(book, path, monkeypatch)
        assert others == [reference] * 5
        assert reference["ok"] is True
        forged = _relinked(lines, 450, lambda r: {"agent": "cloud-posture"} if r.seq in (450, 560) else {})
        tampered = write_export(book.tmp / "t.gz", forged)
        reference, *others = verdicts(book, tampered, monkeypatch)
        assert others == [reference] * 5
        assert [(p["seq"], p["kind"]) for p in reference["problems"]] == [
            (450, "after_seal"), (560, "after_seal"), (None, "manifest_mismatch"), (401, "fork"),
        ]
        assert reference["details"][0] == "line 451: a record for agent 'cloud-posture', sealed at seq 301"
    finally:
        book.store.close()


def test_a_worker_that_dies_changes_nothing(
    logbook: Logbook, small_blocks: dict[str, int], monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines = read_export(logbook.export("full.ndjson.gz"))
    path = write_export(logbook.tmp / "t.gz", TAMPERS["swapped"](lines))
    reference = outcome(verify_chain(witness=logbook.witness_uri, export=path, public_keys=logbook.keys_json,
                                     workers=1))
    monkeypatch.setattr(verify, "_scan", verify._scan_py)  # worker processes serve the Python scan
    real_work = verify._work

    def dies_after_three(conn: Any, shared: Any) -> None:
        tasks = 0

        class Counting:
            def recv(self) -> Any:
                nonlocal tasks
                tasks += 1
                if tasks > 3:
                    os._exit(1)
                return conn.recv()

            def send(self, obj: Any) -> None:
                conn.send(obj)

        real_work(Counting(), shared)

    monkeypatch.setattr(verify, "_work", dies_after_three)
    crashed = outcome(verify_chain(witness=logbook.witness_uri, export=path, public_keys=logbook.keys_json,
                                   workers=2))
    assert crashed == reference
    assert 0 < small_blocks["results"] <= 6


MUTATIONS = st.lists(
    st.tuples(st.sampled_from(["flip", "delete", "duplicate", "swap", "blank", "cut"]),
              st.integers(min_value=1, max_value=600), st.integers(min_value=0, max_value=10_000)),
    min_size=1, max_size=4,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=MUTATIONS)
def test_any_mutation_gets_the_same_verdict_on_any_number_of_workers(
    logbook: Logbook, small_blocks: dict[str, int], monkeypatch: pytest.MonkeyPatch,
    ops: list[tuple[str, int, int]],
) -> None:
    base = logbook.tmp / "base.ndjson.gz"
    if not base.exists():
        logbook.export(base.name)
    path = write_export(logbook.tmp / "m.gz", mutate(read_export(base), ops))
    reference, *others = verdicts(logbook, path, monkeypatch)
    assert others == [reference] * 5


def test_cli_workers_option(cli, logbook: Logbook) -> None:
    path = logbook.export("full.ndjson.gz")
    args = ["chain", "verify", "--export", str(path), "--witness", logbook.witness_uri, "--public-key",
            str(logbook.keys_json)]
    two = cli(*args, "--workers", "2")
    assert (two.exit_code, two.stdout.split(" tip ")[0]) == (0, "ok: 600 record(s), 3 checkpoint(s), 0 problem(s),")
    zero = cli(*args, "--workers", "0")
    assert zero.exit_code == 2
    with pytest.raises(InputError, match=r"^workers must be at least 1, not 0$"):
        verify_chain(export=path, workers=0)
