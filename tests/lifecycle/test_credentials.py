"""Credentials encrypted at rest, rotation under the same identity, and short-lived signed handles."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest

from arxctl.clock import parse_ts
from arxctl.errors import InputError, NotFoundError, StateError
from arxctl.registry import credentials, handles, lifecycle
from arxctl.registry import resources as registry
from arxctl.registry.handles import HandleRejected
from tests.lifecycle.helpers import T0, assert_verifies, bodies, fails, populated

START = parse_ts(T0)
SECRET = b"xoxb-very-secret-token"


@pytest.fixture
def store(tmp_path: Path):
    s = populated(tmp_path / "state")
    yield s
    s.close()


def _set(store, connector: str = "slack", secret: bytes = SECRET, agent: str | None = None):
    return credentials.set_credential(store, connector, secret + b"\n", actor="ops", reason="initial",
                                      catalog=registry.catalog(store), agent=agent, at=START)


def test_secret_is_encrypted_at_rest_and_never_recorded(store) -> None:
    info = _set(store)
    key = credentials.key_path(store.directory)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (info.connector, info.agent, info.version) == ("slack", None, 1)
    assert info.fingerprint.startswith("hmac-sha256:") and len(info.fingerprint) == 44
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for path in store.directory.iterdir():
        assert SECRET not in path.read_bytes(), path
    assert credentials.secret_for(store, "slack", "triage-cs-01") == SECRET
    assert bodies(store, "credential.set") == [{"connector": "slack", "agent": None, "version": 1,
                                                "fingerprint": info.fingerprint, "reason": "initial"}]
    fails(InputError, "a credential for connector 'slack' (shared) already exists; use `arxctl credentials rotate` "
          "to replace it under the same identity", _set, store)


def test_rotation_keeps_the_identity_and_its_handles(store) -> None:
    first = _set(store)
    _, token = handles.issue(store, agent="triage-cs-01", connector="slack", actor="gateway", reason="run 42",
                             ttl="15m", at=START)
    rotated = credentials.rotate(store, "slack", b"xoxb-new-token", actor="ops", reason="quarterly",
                                 at=START + timedelta(minutes=1))
    assert (rotated.version, rotated.created_at, rotated.updated_at) == (2, T0, "2026-04-14T10:01:00Z")
    assert rotated.fingerprint != first.fingerprint
    assert handles.check(store, token, at=START + timedelta(minutes=2)).valid is True
    assert handles.redeem(store, token, at=START + timedelta(minutes=2)) == b"xoxb-new-token"
    assert bodies(store, "credential.rotated") == [{
        "connector": "slack", "agent": None, "version": 2, "fingerprint": rotated.fingerprint,
        "previous_fingerprint": first.fingerprint, "reason": "quarterly"}]
    fails(InputError, "the new secret for connector 'slack' (shared) is the same as the current one",
          credentials.rotate, store, "slack", b"xoxb-new-token", actor="ops", reason="again")
    fails(NotFoundError, "no credential for connector 'jira' (shared) (store one with `arxctl credentials set`)",
          credentials.rotate, store, "jira", b"x", actor="ops", reason="r")


def test_handle_checks_on_use(store) -> None:
    _set(store)
    info, token = handles.issue(store, agent="triage-cs-01", connector="slack", actor="gateway", reason="run 42",
                                ttl="10m", at=START)
    assert token.startswith("arxh1.") and token.count(".") == 2
    assert (info.agent, info.connector, info.issued_at, info.expires_at) == (
        "triage-cs-01", "slack", T0, "2026-04-14T10:10:00Z")
    ok = handles.check(store, token, at=START + timedelta(minutes=9))
    assert ok.to_dict() == {"valid": True, "reason": "ok", "id": info.id, "agent": "triage-cs-01",
                            "connector": "slack", "expires_at": "2026-04-14T10:10:00Z"}
    assert handles.check(store, token, at=START + timedelta(minutes=10)).reason == "expired"
    head, payload, mac = token.split(".")
    forged = f"{head}.{payload[:-2]}AA.{mac}"
    assert handles.check(store, forged, at=START).reason == "bad-signature"
    assert handles.check(store, "not-a-handle", at=START).reason == "malformed"
    assert handles.check(store, token + "x", at=START).reason == "bad-signature"
    lifecycle.suspend(store, "triage-cs-01", actor="ops", reason="incident", ts=T0)
    assert handles.check(store, token, at=START + timedelta(minutes=1)).reason == "agent-suspended"
    fails(HandleRejected, "handle refused: agent-suspended", handles.redeem, store, token,
          at=START + timedelta(minutes=1))
    assert "xoxb" not in str(bodies(store, "handle.issued")) and token not in str(bodies(store, "handle.issued"))


def test_revoked_handle_is_refused_and_listed(store) -> None:
    _set(store)
    info, token = handles.issue(store, agent="triage-cs-01", connector="slack", actor="gateway", reason="run",
                                at=START)
    handles.revoke(store, info.id, actor="ops", reason="leaked in a log", at=START + timedelta(minutes=1))
    assert handles.check(store, token, at=START + timedelta(minutes=2)).reason == "revoked"
    assert [h.id for h in handles.revocation_list(store, at=START + timedelta(minutes=2))] == [info.id]
    assert handles.revocation_list(store, at=START + timedelta(minutes=15)) == []
    fails(InputError, f"handle '{info.id}' is already revoked", handles.revoke, store, info.id, actor="ops",
          reason="again", at=START)
    assert_verifies(store)


def test_issue_fails_closed(store) -> None:
    fails(InputError, "the platform holds no credential for connector 'slack' (store one with "
          "`arxctl credentials set slack`)", handles.issue, store, agent="triage-cs-01", connector="slack",
          actor="gateway", reason="r", at=START)
    _set(store)
    fails(InputError, "agent 'triage-cs-01' does not declare connector 'github' in its manifest", handles.issue,
          store, agent="triage-cs-01", connector="github", actor="gateway", reason="r", at=START)
    fails(InputError, "--ttl 2h exceeds the 1h maximum for a handle", handles.issue, store, agent="triage-cs-01",
          connector="slack", actor="gateway", reason="r", ttl="2h", at=START)
    lifecycle.suspend(store, "triage-cs-01", actor="ops", reason="incident", ts=T0)
    fails(InputError, "agent 'triage-cs-01' is suspended: no handle is issued", handles.issue, store,
          agent="triage-cs-01", connector="slack", actor="gateway", reason="r", at=START)
    assert handles.list_handles(store) == []


def test_agent_bound_credential_wins_and_must_be_declared(store) -> None:
    _set(store)
    _set(store, secret=b"agent-own-token", agent="triage-cs-02")
    fails(InputError, "agent 'triage-cs-02' does not declare connector 'github' in its manifest", _set, store,
          "github", agent="triage-cs-02")
    fails(InputError, "unknown connector 'nosuch': not in the connector catalog", _set, store, "nosuch")
    assert credentials.secret_for(store, "slack", "triage-cs-02") == b"agent-own-token"
    assert credentials.secret_for(store, "slack", "triage-cs-01") == SECRET
    assert [(c.connector, c.agent) for c in credentials.list_credentials(store)] == [
        ("slack", None), ("slack", "triage-cs-02")]


def test_key_file_problems_fail_closed(store) -> None:
    _set(store)
    key = credentials.key_path(store.directory)
    os.chmod(key, 0o644)
    fails(StateError, f"{key} is readable by other users; run `chmod 600 {key}`", credentials.platform_keys,
          store.directory)
    key.unlink()
    credentials.platform_keys(store.directory)
    fails(StateError, f"the credential for connector 'slack' (shared) does not decrypt: {key} is not the key it was "
          "stored with, or it was altered", credentials.secret_for, store, "slack", "triage-cs-01")
