"""The enforcement bundle: built purely and canonically, checked on load, and failing closed when anything is off."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from arxctl.canonical import canonical_bytes, digest
from arxctl.policy.bundle import (
    BUNDLE_KEY,
    BundleError,
    agent_entry,
    build_bundle,
    bundle_bytes,
    bundle_revision,
    load_bundle_dir,
    parse_bundle,
    state_from_bundle,
)
from arxctl.policy.compiler import compile_policies
from arxctl.policy.engine import Call, decide
from tests.policy.helpers import agent_doc, approve, policy

GENERATED = "2026-04-14T10:00:00Z"
CATALOG = {"apiVersion": "arx.dev/v1alpha1", "kind": "ConnectorCatalog", "metadata": {"name": "acme"},
           "spec": {"connectors": [{"name": "acme-ticketing", "dataClass": "confidential",
                                    "actions": {"ticket.read": "read", "ticket.close": "write"}}]}}


def grant(gid: str = "fix-acl", phase: str = "Approved", approved_at: str | None = "2026-04-14T09:55:00Z",
          expires_at: str | None = "2026-04-14T10:10:00Z", **extra: Any) -> dict[str, Any]:
    return {"id": gid, "agent": "triage-cs-01", "actions": ["aws.s3.put_bucket_acl"], "scope": {"bucket": "logs"},
            "phase": phase, "approved_at": approved_at, "expires_at": expires_at, **extra}


def refused(build: Callable[[], Any]) -> str:
    """The message of the BundleError that `build()` raises."""
    with pytest.raises(BundleError) as caught:
        build()
    return str(caught.value)


def entry(name: str = "triage-cs-01", status: str = "active", throttled: bool = False, **spec: Any) -> dict[str, Any]:
    doc = agent_doc(name, **spec)
    return agent_entry(doc, status=status, throttled=throttled, version=2, digest=digest(doc))


def bundle(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "namespace": "payments", "agents": [entry()],
        "policies": [policy("change-control", approve("close", "servicenow.change.close"))],
        "catalogs": [CATALOG], "grants": [grant()], "revoked_handles": ["h-2", "h-1", "h-2"],
        "generated": GENERATED,
    }
    args.update(overrides)
    return build_bundle(**args)


def test_bundle_has_the_contract_shape() -> None:
    built = bundle()
    doc = agent_doc("triage-cs-01")
    assert built == {
        "apiVersion": "arx.dev/v1alpha1", "kind": "EnforcementBundle", "namespace": "payments",
        "generated": GENERATED,
        "agents": [{"name": "triage-cs-01", "status": "active", "throttled": False, "version": 2,
                    "digest": digest(doc), "doc": doc}],
        "policies": [policy("change-control", approve("close", "servicenow.change.close"))],
        "catalogs": [CATALOG],
        "grants": [{"id": "fix-acl", "agent": "triage-cs-01", "actions": ["aws.s3.put_bucket_acl"],
                    "scope": {"bucket": "logs"}, "phase": "Approved", "approved_at": "2026-04-14T09:55:00Z",
                    "expires_at": "2026-04-14T10:10:00Z"}],
        "revoked_handles": ["h-1", "h-2"],
        "policy_revision": compile_policies([policy("change-control", approve("close", "servicenow.change.close"))])
        .revision,
        "revision": built["revision"],
    }
    unhashed = {k: v for k, v in built.items() if k not in ("generated", "revision")}
    assert built["revision"] == digest(unhashed)
    assert bundle_bytes(built) == canonical_bytes(built)


def test_input_order_and_generation_time_do_not_change_the_revision() -> None:
    first = bundle(agents=[entry("a-1"), entry("b-2")], revoked_handles=["h-1", "h-2"])
    second = bundle(agents=[entry("b-2"), entry("a-1")], revoked_handles=["h-2", "h-1"],
                    generated="2026-04-14T10:05:00Z")
    assert first["revision"] == second["revision"]
    assert [a["name"] for a in second["agents"]] == ["a-1", "b-2"]
    assert first["generated"] != second["generated"]


def test_server_fields_are_not_carried() -> None:
    doc = agent_doc("triage-cs-01")
    live = {**doc, "metadata": {**doc["metadata"], "uid": "u-1", "resourceVersion": "7",
                                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "status": {"phase": "Ready"}}
    built = bundle(agents=[agent_entry(live, status="active", throttled=False, version=1, digest="sha256:x")])
    assert built["agents"][0]["doc"] == doc


@pytest.mark.parametrize(("carried", "phase", "approved_at", "expires_at"), [
    (True, "Approved", "2026-04-14T09:55:00Z", "2026-04-14T10:00:00.000001Z"),
    (False, "Approved", "2026-04-14T09:55:00Z", "2026-04-14T10:00:00Z"),
    (False, "Approved", None, "2026-04-14T10:10:00Z"),
    (False, "Approved", "2026-04-14T09:55:00Z", None),
    (False, "Pending", None, None),
    (False, "Expired", "2026-04-14T09:55:00Z", "2026-04-14T10:10:00Z"),
    (False, "Revoked", "2026-04-14T09:55:00Z", "2026-04-14T10:10:00Z"),
    (False, "Denied", None, None),
])
def test_only_approved_unexpired_grants_are_carried(carried: bool, phase: str, approved_at: str | None,
                                                    expires_at: str | None) -> None:
    built = bundle(grants=[grant(phase=phase, approved_at=approved_at, expires_at=expires_at)])
    assert [g["id"] for g in built["grants"]] == (["fix-acl"] if carried else [])


def test_an_expired_grant_changes_the_revision() -> None:
    assert bundle()["revision"] != bundle(grants=[grant(phase="Expired")])["revision"]


def test_duplicates_and_unknown_statuses_are_refused() -> None:
    assert refused(lambda: bundle(agents=[entry(), entry()])) == "the bundle would hold agent 'triage-cs-01' twice"
    assert refused(lambda: bundle(agents=[entry(status="paused")])) == \
        "agent 'triage-cs-01' has unknown status 'paused'"


def _decide(built: dict[str, Any], action: str, payload: Any = None, agent: str = "triage-cs-01") -> tuple[str, str]:
    state = state_from_bundle(parse_bundle(bundle_bytes(built)))
    decision = decide(Call(ts="2026-04-14T10:01:00Z", agent=agent, action=action, payload=payload or {}), state)
    return decision.verdict, decision.reason


def test_state_from_bundle_decides_like_the_engine() -> None:
    built = bundle()
    assert _decide(built, "servicenow.change.close") == ("APPROVAL_REQUIRED", "rule")
    assert _decide(built, "aws.s3.put_bucket_acl", {"bucket": "logs"}) == ("ALLOW", "grant")
    assert _decide(built, "aws.s3.put_bucket_acl", {"bucket": "other"}) == ("DENY", "not-in-manifest")
    assert _decide(built, "slack.chat.post", agent="nobody") == ("DENY", "agent-unknown")
    assert _decide(bundle(agents=[entry(status="suspended")]), "slack.chat.post") == ("DENY", "agent-suspended")
    assert _decide(bundle(agents=[entry(lifecycle="decommissioned")]), "slack.chat.post") == \
        ("DENY", "agent-decommissioned")
    assert _decide(bundle(grants=[grant(phase="Expired")]), "aws.s3.put_bucket_acl", {"bucket": "logs"}) == \
        ("DENY", "not-in-manifest")


def test_the_catalog_and_the_throttle_reach_the_engine() -> None:
    connectors = [{"name": "acme-ticketing", "target": {"system": "acme", "env": "dev"},
                   "actions": ["acme-ticketing.ticket.close"]}]
    built = bundle(agents=[entry(connectors=connectors, throttled=True)], policies=[])
    assert _decide(built, "acme-ticketing.ticket.close") == ("APPROVAL_REQUIRED", "throttled")
    state = state_from_bundle(built)
    assert state.catalog.lookup("acme-ticketing.ticket.read") is not None


def _mount(folder: Path, data: bytes, stamp: str) -> None:
    """Lay out a ConfigMap volume the way the kubelet does: <stamp>/bundle.json, ..data -> <stamp>, a key link."""
    (folder / stamp).mkdir()
    (folder / stamp / BUNDLE_KEY).write_bytes(data)
    temp = folder / "..data_tmp"
    temp.symlink_to(stamp)
    os.replace(temp, folder / "..data")
    if not (folder / BUNDLE_KEY).is_symlink():
        (folder / BUNDLE_KEY).symlink_to(f"..data/{BUNDLE_KEY}")


def test_load_bundle_dir_follows_the_configmap_symlink_swap(tmp_path: Path) -> None:
    first, second = bundle(), bundle(grants=[])
    _mount(tmp_path, bundle_bytes(first), "..2026_04_14_10_00_00.1")
    assert load_bundle_dir(tmp_path) == first
    _mount(tmp_path, bundle_bytes(second), "..2026_04_14_10_01_00.2")
    assert load_bundle_dir(tmp_path)["revision"] == second["revision"]
    assert load_bundle_dir(tmp_path / BUNDLE_KEY) == second


def test_a_missing_bundle_fails_closed(tmp_path: Path) -> None:
    with pytest.raises(BundleError) as caught:
        load_bundle_dir(tmp_path)
    assert str(caught.value) == (f"{tmp_path / BUNDLE_KEY}: no enforcement bundle (is the arx-enforcement-bundle "
                                 "ConfigMap mounted?)")


@pytest.mark.parametrize(("data", "message"), [
    (b'{"apiVersion": "arx.dev/v1alpha1",\n  "kind": }',
     "b.json:2:11: not valid JSON: unexpected character, expected a JSON value"),
    (b"[]", "b.json: a bundle is a JSON object"),
    (b'{"apiVersion": "arx.dev/v1alpha1"}', "b.json: missing agents, catalogs, generated, grants, kind, namespace, "
                                            "policies, policy_revision, revision, revoked_handles"),
])
def test_corrupt_bundles_are_refused(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "b.json"
    path.write_bytes(data)
    with pytest.raises(BundleError) as caught:
        load_bundle_dir(path)
    assert str(caught.value) == str(tmp_path / message)


def test_an_altered_bundle_is_refused() -> None:
    built = bundle()
    tampered = {**built, "agents": [{**built["agents"][0], "status": "active", "throttled": True}]}
    with pytest.raises(BundleError) as caught:
        parse_bundle(bundle_bytes(tampered), "cm")
    assert str(caught.value) == (f"cm: revision {built['revision']!r} does not match its content "
                                 f"({bundle_revision(tampered)}): the bundle was altered or truncated")


def test_a_policy_revision_that_does_not_match_its_policies_is_refused() -> None:
    built = bundle()
    forged = {**built, "policy_revision": "sha256:" + "0" * 64}
    forged["revision"] = bundle_revision(forged)
    assert refused(lambda: state_from_bundle(parse_bundle(bundle_bytes(forged)))) == (
        f"bundle policy_revision 'sha256:{'0' * 64}' does not match its policies ({built['policy_revision']})")


def test_conflicting_catalogs_are_refused() -> None:
    clash = {**CATALOG, "metadata": {"name": "clash"},
             "spec": {"connectors": [{"name": "acme-ticketing", "dataClass": "internal",
                                      "actions": {"ticket.close": "destructive"}}]}}
    assert refused(lambda: state_from_bundle(bundle(catalogs=[CATALOG, clash]))) == (
        "bundle catalogs conflict: action acme-ticketing.ticket.close is already 'write' in catalog; 'clash' cannot "
        "make it 'destructive'")


def test_an_agent_entry_must_match_its_document() -> None:
    built = bundle()
    wrong = {**built, "agents": [{**built["agents"][0], "name": "other"}]}
    wrong["revision"] = bundle_revision(wrong)
    with pytest.raises(BundleError) as caught:
        parse_bundle(bundle_bytes(wrong), "cm")
    assert str(caught.value) == "cm: agents[0].doc is not the Agent resource named 'other'"
