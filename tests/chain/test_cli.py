"""`arxctl keys` and `arxctl chain publish|export|verify|seal` end to end through the CLI."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import orjson

from arxctl.chain import store as chain
from arxctl.store.sqlite import Store
from tests.chain.conftest import entries, read_export, write_export


def seed(state: Path, count: int = 50) -> None:
    with Store(state) as store, store.transaction() as conn:
        chain.append_many(conn, entries(1, count))


def test_keys_publish_export_verify_round_trip(cli, state_dir: Path, tmp_path: Path) -> None:
    seed(state_dir)
    result = cli("keys", "generate", "--key-id", "prod-2026", "-o", "json")
    assert result.exit_code == 0, result.output
    key = orjson.loads(result.stdout)
    assert key["key_id"] == "prod-2026"
    assert stat.S_IMODE(os.stat(state_dir / "keys" / "prod-2026.pem").st_mode) == 0o600
    witness = f"file://{tmp_path}/witness"
    published = cli("chain", "publish", "--witness", witness, "-o", "json")
    assert published.exit_code == 0, published.output
    body = orjson.loads(published.stdout)
    assert (body["checkpoint"]["n"], body["checkpoint"]["size"], body["heartbeat"]) == (1, 50, False)
    beat = cli("chain", "publish", "--witness", witness, "--every", "10ms", "--count", "2")
    assert beat.exit_code == 0, beat.output
    assert [line.split(" root=")[0] for line in beat.stdout.splitlines()] == [
        "heartbeat n=2 size=50", "heartbeat n=3 size=50",
    ]
    assert cli("keys", "export-public", "--out", str(tmp_path / "keys.json")).stdout == (
        f"wrote 1 public key(s) to {tmp_path / 'keys.json'}\n"
    )
    out = tmp_path / "audit.ndjson.gz"
    exported = cli("chain", "export", "--out", str(out))
    assert exported.stdout == f"wrote 50 record(s) (complete) to {out}, against checkpoint n=3 size=50\n"
    verified = cli("chain", "verify", "--export", str(out), "--witness", witness,
                   "--public-key", str(tmp_path / "keys.json"), "--format", "json")
    assert verified.exit_code == 0, verified.output
    assert orjson.loads(verified.stdout) == {
        "ok": True, "tip_matches_witness": True, "no_gaps": True, "signatures_valid": True,
        "consistent_with_witness_history": True, "records": 50, "problems": [],
    }
    local = cli("chain", "verify", "--format", "json")
    assert local.exit_code == 0
    assert orjson.loads(local.stdout)["records"] == 50

    lines = read_export(out)
    lines[10] = lines[10].replace(b'"verdict":"ALLOW"', b'"verdict":"DENY"')
    bad = write_export(tmp_path / "bad.gz", lines)
    failed = cli("chain", "verify", "--export", str(bad), "--witness", witness,
                 "--public-key", str(tmp_path / "keys.json"))
    assert failed.exit_code == 1
    assert failed.stdout.splitlines()[0].startswith("seq 10: hash_mismatch: line 11: stored hash sha256:")
    assert failed.stdout.splitlines()[-1].startswith(
        "FAILED: 50 record(s), 3 checkpoint(s), 3 problem(s), tip sha256:"
    )


def test_rotation_closes_the_old_window_and_both_keys_verify(cli, state_dir: Path, tmp_path: Path) -> None:
    seed(state_dir, 5)
    assert cli("keys", "generate", "--key-id", "k1").exit_code == 0
    witness = f"file://{tmp_path}/w"
    assert cli("chain", "publish", "--witness", witness).exit_code == 0
    rotated = cli("keys", "rotate", "--key-id", "k2")
    assert rotated.exit_code == 0
    assert rotated.stdout.splitlines()[0].startswith("closed k1 at ")
    assert cli("chain", "publish", "--witness", witness).exit_code == 0
    listed = orjson.loads(cli("keys", "list", "-o", "json").stdout)
    assert [(k["key_id"], k["valid_until"] is None) for k in listed] == [("k1", False), ("k2", True)]
    cli("keys", "export-public", "--out", str(tmp_path / "keys.json"))
    out = tmp_path / "a.ndjson.gz"
    assert cli("chain", "export", "--out", str(out)).exit_code == 0
    verified = cli("chain", "verify", "--export", str(out), "--witness", witness, "--public-key",
                   str(tmp_path / "keys.json"), "--format", "json")
    assert orjson.loads(verified.stdout)["ok"] is True


def test_seal_cli_and_bad_input(cli, state_dir: Path, tmp_path: Path) -> None:
    seed(state_dir, 3)
    sealed = cli("chain", "seal", "triage-cs-01", "--retention-class", "sox-7yr", "--reason", "decommissioned")
    assert (sealed.exit_code, sealed.stdout) == (0, "sealed triage-cs-01 at seq 4 (retention sox-7yr)\n")
    again = cli("chain", "seal", "triage-cs-01", "--retention-class", "sox-7yr", "--reason", "x")
    assert (again.exit_code, again.stderr) == (1, "error: agent 'triage-cs-01' is already sealed\n")
    unknown = cli("chain", "seal", "x", "--retention-class", "forever", "--reason", "x")
    assert unknown.exit_code == 2
    no_key = cli("chain", "publish", "--witness", f"file://{tmp_path}/w")
    assert (no_key.exit_code, no_key.stderr) == (
        2, "error: no active signing key: run `arxctl keys generate` or pass --kms-key-id\n"
    )
    no_cp = cli("chain", "export", "--out", str(tmp_path / "x.gz"), "--key-id", "nope")
    assert (no_cp.exit_code, no_cp.stderr) == (2, "error: no signing key 'nope' (see `arxctl keys list`)\n")
    bad_keys = tmp_path / "k.json"
    bad_keys.write_text("{nope")
    exported = tmp_path / "missing.gz"
    bad = cli("chain", "verify", "--export", str(exported), "--public-key", str(bad_keys))
    assert bad.exit_code == 2
    assert bad.stderr == (
        f"error: {bad_keys}:1:2: not a PEM key nor a keys JSON file: unexpected character, expected a string key\n"
    )
    assert not (tmp_path / "x.gz").exists()
