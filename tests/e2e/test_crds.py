"""The generated CRDs on a real kube-apiserver: accepted, validated by the server itself, status, columns."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from arxctl.k8s.crds import KIND_INFO
from tests.cluster import committed_crds
from tests.envtest.cluster import Cluster

pytestmark = pytest.mark.timeout(120, func_only=True)

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION = "arx.dev", "v1alpha1"
NOT_CHECKED = {
    "reason": "FieldValueInvalid",
    "message": "Invalid value: null: some validation rules were not checked because the object was invalid; "
               "correct the existing errors to complete validation",
    "field": "<nil>",
}


def _example_documents() -> list[tuple[str, dict[str, Any]]]:
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    docs: list[tuple[str, dict[str, Any]]] = []
    for folder in ("manifests", "policies", "catalogs"):
        for path in sorted((ROOT / "examples" / folder).glob("*.yaml")):
            docs.extend((f"{folder}/{path.name}", doc) for doc in yaml.load_all(path) if doc)
    return docs


def _plural(kind: str) -> str:
    return KIND_INFO[kind].plural


def grant(**spec: Any) -> dict[str, Any]:
    """A valid Grant (formats.md section 1), with spec fields replaced (None removes one)."""
    body = {
        "agent": "cloud-posture-remediation",
        "actions": ["aws.s3.put_bucket_acl"],
        "scope": {"bucket": "bank-logs-prod"},
        "ttl": "15m",
        "reason": "Remediate public ACL finding CSPM-1182",
        "requestedBy": "cloud-posture-remediation",
    }
    body.update(spec)
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Grant", "metadata": {"name": "fix-bucket-acl-0414"},
            "spec": {k: v for k, v in body.items() if v is not None}}


def agent(name: str = "triage-cs-01", **spec: Any) -> dict[str, Any]:
    """A valid Agent with spec fields replaced (None removes one)."""
    body = {
        "owner": {"name": "Dana Reyes", "email": "dana@bank.example", "team": "secops"},
        "purpose": "Triage customer-support change tickets",
        "connectors": [{"name": "slack", "dataClass": "internal", "target": {"system": "slack", "env": "prod"},
                        "actions": ["slack.chat.post"]}],
    }
    body.update(spec)
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Agent", "metadata": {"name": name},
            "spec": {k: v for k, v in body.items() if v is not None}}


def policy(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Policy", "metadata": {"name": "change-control"},
            "spec": spec}


def catalog(actions: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ConnectorCatalog", "metadata": {"name": "acme"},
            "spec": {"connectors": [{"name": "acme-ticketing", "dataClass": "confidential", "actions": actions}]}}


def _rule(name: str, then: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "when": "servicenow.change.close", "then": then}


@pytest.fixture
def objects(api_client: Any, installed_crds: dict[str, Any]) -> Any:
    """The CustomObjectsApi for the arx.dev resources (CRDs installed)."""
    from kubernetes import client

    return client.CustomObjectsApi(api_client)


def create(objects: Any, namespace: str, doc: dict[str, Any]) -> dict[str, Any]:
    """Create with strict field validation (unknown or duplicate fields are errors, as `kubectl apply`)."""
    return objects.create_namespaced_custom_object(
        GROUP, VERSION, namespace, _plural(doc["kind"]), doc, field_validation="Strict")


def rejection(objects: Any, namespace: str, doc: dict[str, Any]) -> tuple[int, str, list[dict[str, str]]]:
    """(HTTP status, message, causes) of the server's refusal to create `doc`."""
    from kubernetes.client.exceptions import ApiException

    with pytest.raises(ApiException) as caught:
        create(objects, namespace, doc)
    body = json.loads(caught.value.body)
    return caught.value.status, body["message"], body.get("details", {}).get("causes", [])


def test_crds_are_established_with_their_names(installed_crds: dict[str, dict[str, Any]]) -> None:
    accepted = {kind: crd["status"]["acceptedNames"] for kind, crd in installed_crds.items()}
    assert accepted == {
        "Agent": {"kind": "Agent", "listKind": "AgentList", "plural": "agents", "singular": "agent",
                  "shortNames": ["agt"], "categories": ["arx"]},
        "ConnectorCatalog": {"kind": "ConnectorCatalog", "listKind": "ConnectorCatalogList",
                             "plural": "connectorcatalogs", "singular": "connectorcatalog",
                             "shortNames": ["ccat"], "categories": ["arx"]},
        "Grant": {"kind": "Grant", "listKind": "GrantList", "plural": "grants", "singular": "grant",
                  "shortNames": ["gr"], "categories": ["arx"]},
        "Policy": {"kind": "Policy", "listKind": "PolicyList", "plural": "policies", "singular": "policy",
                   "shortNames": ["pol"], "categories": ["arx"]},
    }
    assert [crd["metadata"]["name"] for crd in committed_crds()] == [
        "agents.arx.dev", "connectorcatalogs.arx.dev", "grants.arx.dev", "policies.arx.dev"]


@pytest.mark.parametrize(("source", "doc"), _example_documents(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_example_is_accepted_unchanged(objects: Any, namespace: str, source: str, doc: dict[str, Any]) -> None:
    created = create(objects, namespace, doc)
    assert created["spec"] == doc["spec"], f"{source}: the server pruned or changed the spec"
    assert created["metadata"].get("labels") == doc["metadata"].get("labels")
    assert "status" not in created


@pytest.mark.parametrize("ttl", ["15m", "24h", "1d", "1440m", "23h59m59s999ms", "0d12h"])
def test_grant_ttl_up_to_24h_is_accepted(objects: Any, namespace: str, ttl: str) -> None:
    created = create(objects, namespace, grant(ttl=ttl, scope={"bucket": "bank-logs-prod", "public": False,
                                                             "max": 3}))
    assert created["spec"]["ttl"] == ttl
    assert created["spec"]["scope"] == {"bucket": "bank-logs-prod", "public": False, "max": 3}


def _invalid(field: str, message: str) -> dict[str, str]:
    return {"reason": "FieldValueInvalid", "message": message, "field": field}


INVALID: list[tuple[str, dict[str, Any], list[dict[str, str]]]] = [
    ("grant-ttl-48h", grant(ttl="48h"),
     [_invalid("spec.ttl", 'Invalid value: "48h": ttl 48h exceeds the 24h maximum for a grant')]),
    ("grant-ttl-7d", grant(ttl="7d"),
     [_invalid("spec.ttl", 'Invalid value: "7d": ttl 7d exceeds the 24h maximum for a grant')]),
    ("grant-ttl-one-ms-over", grant(ttl="24h1ms"),
     [_invalid("spec.ttl", 'Invalid value: "24h1ms": ttl 24h1ms exceeds the 24h maximum for a grant')]),
    ("grant-ttl-zero", grant(ttl="0s"), [_invalid("spec.ttl", 'Invalid value: "0s": must be greater than zero')]),
    ("grant-ttl-syntax", grant(ttl="15 minutes"),
     [_invalid("spec.ttl", "Invalid value: \"15 minutes\": spec.ttl in body should match "
                           "'^(\\d+(ms|s|m|h|d))+$'")]),
    ("grant-missing-reason", grant(reason=None),
     [{"reason": "FieldValueRequired", "message": "Required value", "field": "spec.reason"}, NOT_CHECKED]),
    ("policy-review-equals-deny", policy(thresholds={"review": 80, "deny": 80}),
     [_invalid("spec.thresholds", "Invalid value: review threshold must be below deny threshold "
                                  "(defaults: review 60, deny 80)")]),
    ("policy-review-above-default-deny", policy(thresholds={"review": 90}),
     [_invalid("spec.thresholds", "Invalid value: review threshold must be below deny threshold "
                                  "(defaults: review 60, deny 80)")]),
    ("policy-two-outcomes", policy(rules=[_rule("r", {"deny": {"reason": "no"},
                                                      "approvalRequired": {"approvers": {"group": "g"}}})]),
     [{"reason": "FieldValueTooMany", "message": "Too many: 2: must have at most 1 item",
       "field": "spec.rules[0].then"}, NOT_CHECKED]),
    ("policy-duplicate-rule", policy(rules=[_rule("r", {"deny": {"reason": "a"}}),
                                            _rule("r", {"deny": {"reason": "b"}})]),
     [{"reason": "FieldValueDuplicate", "message": 'Duplicate value: {"name":"r"}', "field": "spec.rules[1]"}]),
    ("policy-zero-timeout", policy(rules=[_rule("r", {"approvalRequired": {"approvers": {"group": "g"},
                                                                           "timeout": "0m"}})]),
     [_invalid("spec.rules[0].then.approvalRequired.timeout", 'Invalid value: "0m": must be greater than zero')]),
    ("policy-bad-selector-key", policy(selector={"bad key": "x"}),
     [_invalid("spec.selector", "Invalid value: keys must match "
                                "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                                "[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")]),
    ("agent-missing-owner", agent(owner=None),
     [{"reason": "FieldValueRequired", "message": "Required value", "field": "spec.owner"}, NOT_CHECKED]),
    ("agent-unknown-data-class", agent(connectors=[{"name": "slack", "dataClass": "secret",
                                                    "actions": ["slack.chat.post"]}]),
     [{"reason": "FieldValueNotSupported",
       "message": 'Unsupported value: "secret": supported values: "public", "internal", "confidential", "restricted"',
       "field": "spec.connectors[0].dataClass"}, NOT_CHECKED]),
    ("agent-duplicate-connector", agent(connectors=[{"name": "slack", "actions": ["slack.chat.post"]},
                                                    {"name": "slack", "actions": ["slack.chat.post"]}]),
     [{"reason": "FieldValueDuplicate", "message": 'Duplicate value: {"name":"slack"}',
       "field": "spec.connectors[1]"}]),
    ("agent-own-parent", agent(parent="triage-cs-01"),
     [_invalid("spec.parent", "Invalid value: an agent cannot be its own parent")]),
    ("agent-name-not-a-label", agent(name="triage.cs"),
     [_invalid("metadata.name", "Invalid value: \"triage.cs\": metadata.name in body should match "
                                "'^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'")]),
    ("catalog-bad-action-key", catalog({"ticket-close": "write"}),
     [_invalid("spec.connectors[0].actions", "Invalid value: keys must match ^[a-z0-9_]+\\.[a-z0-9_]+$")]),
]


@pytest.mark.parametrize(("doc", "causes"), [(d, c) for _, d, c in INVALID], ids=[i for i, _, _ in INVALID])
def test_server_rejects_invalid_resources(objects: Any, namespace: str, doc: dict[str, Any],
                                          causes: list[dict[str, str]]) -> None:
    status, _, actual = rejection(objects, namespace, doc)
    assert (status, actual) == (422, causes)


def test_unknown_fields_are_rejected_under_strict_validation(objects: Any, namespace: str) -> None:
    doc = agent()
    doc["spec"]["ownr"] = {"name": "typo"}
    status, message, causes = rejection(objects, namespace, doc)
    assert (status, message, causes) == (
        400, 'Agent in version "v1alpha1" cannot be handled as a Agent: strict decoding error: unknown field '
             '"spec.ownr"', [])


def test_grant_spec_is_immutable_but_its_status_is_writable(objects: Any, namespace: str) -> None:
    from kubernetes.client.exceptions import ApiException

    created = create(objects, namespace, grant())
    name = created["metadata"]["name"]
    with pytest.raises(ApiException) as caught:
        objects.patch_namespaced_custom_object(GROUP, VERSION, namespace, "grants", name, {"spec": {"ttl": "20h"}})
    assert json.loads(caught.value.body)["details"]["causes"] == [
        _invalid("spec", "Invalid value: a grant's spec is immutable: request a new grant")]
    approved = objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "grants", name,
        {"status": {"phase": "Approved", "approvedBy": "secops-lead", "expiresAt": "2026-04-14T10:15:00Z"}})
    assert approved["status"] == {"phase": "Approved", "approvedBy": "secops-lead",
                                  "expiresAt": "2026-04-14T10:15:00Z"}
    assert approved["spec"] == created["spec"]


def test_status_subresource_separates_spec_and_status(objects: Any, namespace: str) -> None:
    created = create(objects, namespace, agent())
    name = created["metadata"]["name"]
    assert created["metadata"]["generation"] == 1

    status_write = objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "agents", name, {"spec": {"purpose": "changed through /status"},
                                                     "status": {"phase": "Active"}})
    assert (status_write["spec"], status_write["status"], status_write["metadata"]["generation"]) == (
        created["spec"], {"phase": "Active"}, 1)

    spec_write = objects.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "agents", name, {"spec": {"purpose": "Triage and close change tickets"},
                                                     "status": {"phase": "Suspended"}})
    assert (spec_write["spec"]["purpose"], spec_write["status"], spec_write["metadata"]["generation"]) == (
        "Triage and close change tickets", {"phase": "Active"}, 2)


def test_a_requester_cannot_approve_through_status_without_rbac(
        cluster: Cluster, api_client: Any, objects: Any, namespace: str) -> None:
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    client.RbacAuthorizationV1Api(api_client).create_namespaced_role(namespace, {
        "metadata": {"name": "grant-requester"},
        "rules": [{"apiGroups": [GROUP], "resources": ["grants"],
                   "verbs": ["get", "list", "create", "update", "patch"]}],
    })
    client.RbacAuthorizationV1Api(api_client).create_namespaced_role_binding(namespace, {
        "metadata": {"name": "grant-requesters"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "grant-requester"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "requesters"}],
    })
    requester_client = config.new_client_from_config(
        config_file=str(cluster.kubeconfig_for("alice", ["requesters"])))
    try:
        requester = client.CustomObjectsApi(requester_client)
        doc = grant()
        doc["status"] = {"phase": "Approved"}
        created = requester.create_namespaced_custom_object(GROUP, VERSION, namespace, "grants", doc)
        assert "status" not in created
        with pytest.raises(ApiException) as caught:
            requester.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, "grants", created["metadata"]["name"], {"status": {"phase": "Approved"}})
        assert caught.value.status == 403
        assert json.loads(caught.value.body)["message"] == (
            f'grants.arx.dev "fix-bucket-acl-0414" is forbidden: User "alice" cannot patch resource '
            f'"grants/status" in API group "arx.dev" in the namespace "{namespace}"')
    finally:
        requester_client.close()


@pytest.mark.parametrize(("plural", "doc", "status", "columns", "cells"), [
    ("agents", agent(), {"phase": "Active"},
     ["Name", "Owner", "Status", "Team", "Purpose", "Age"],
     ["triage-cs-01", "dana@bank.example", "Active", "secops", "Triage customer-support change tickets"]),
    ("policies", policy(thresholds={"review": 50, "deny": 70}), {"revision": "sha256:0f1e"},
     ["Name", "Review", "Deny", "Revision", "Age"], ["change-control", 50, 70, "sha256:0f1e"]),
    ("grants", grant(), {"phase": "Approved", "expiresAt": "2026-04-14T10:15:00Z"},
     ["Name", "Agent", "Phase", "TTL", "Expires", "Actions", "Age"],
     ["fix-bucket-acl-0414", "cloud-posture-remediation", "Approved", "15m", "2026-04-14T10:15:00Z",
      '["aws.s3.put_bucket_acl"]']),
    ("connectorcatalogs", catalog({"ticket.read": "read"}), None, ["Name", "Age"], ["acme"]),
])
def test_printer_columns_in_the_server_table(cluster: Cluster, objects: Any, namespace: str, plural: str,
                                             doc: dict[str, Any], status: dict[str, Any] | None,
                                             columns: list[str], cells: list[Any]) -> None:
    create(objects, namespace, copy.deepcopy(doc))
    if status is not None:
        objects.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, plural, doc["metadata"]["name"],
                                                      {"status": status})
    table = cluster.get_json(f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}",
                             accept="application/json;as=Table;v=v1;g=meta.k8s.io")
    assert [c["name"] for c in table["columnDefinitions"]] == columns
    assert [row["cells"][:-1] for row in table["rows"]] == [cells]
    assert table["columnDefinitions"][-1]["type"] == "date"


def test_kubectl_get_by_short_name_and_category(cluster: Cluster, objects: Any, namespace: str) -> None:
    kubectl = cluster.kubectl
    assert kubectl is not None, "no kubectl in KUBEBUILDER_ASSETS or on PATH (tests/envtest/build.sh copies one)"
    create(objects, namespace, grant())
    create(objects, namespace, agent())

    def get(*args: str) -> list[str]:
        done = subprocess.run([str(kubectl), f"--kubeconfig={cluster.kubeconfig}", "-n", namespace, "get", *args],
                              capture_output=True, text=True, timeout=60, check=True)
        return done.stdout.splitlines()

    def without_age(lines: list[str]) -> list[list[str]]:
        return [line.split()[:-1] for line in lines]

    assert without_age(get("gr")) == [["NAME", "AGENT", "PHASE", "TTL", "EXPIRES"],
                                      ["fix-bucket-acl-0414", "cloud-posture-remediation", "15m"]]
    assert without_age(get("agt")) == [["NAME", "OWNER", "STATUS"], ["triage-cs-01", "dana@bank.example"]]
    assert get("arx", "-o", "name") == ["agent.arx.dev/triage-cs-01", "grant.arx.dev/fix-bucket-acl-0414"]
