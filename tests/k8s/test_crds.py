"""`arxctl crds`: generation from the schemas, the staleness check, and the JSON Schema -> structural rules."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from arxctl.k8s import crds
from arxctl.k8s.crds import CrdGenerationError, KindInfo, Rule, structural_schema

ROOT = Path(__file__).resolve().parents[2]
FILES = ["arx.dev_agents.yaml", "arx.dev_connectorcatalogs.yaml", "arx.dev_grants.yaml", "arx.dev_policies.yaml",
         "kustomization.yaml"]


def _root(spec: dict[str, Any]) -> dict[str, Any]:
    """A minimal resource schema with `spec` as given."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://arx.dev/schemas/v1alpha1/thing.json",
        "title": "Thing",
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "arx.dev/v1alpha1"},
            "kind": {"const": "Thing"},
            "metadata": {"type": "object", "properties": {
                "name": {"type": "string", "maxLength": 63, "pattern": "^[a-z]+$"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            }},
            "spec": spec,
        },
    }


def _spec(info: KindInfo, spec: dict[str, Any]) -> dict[str, Any]:
    return structural_schema(info, _root(spec))["properties"]["spec"]


THING = KindInfo(kind="Thing", plural="things", short_names=())


def test_committed_crds_are_current(cli: Any) -> None:
    result = cli("crds", "check", "--dir", str(ROOT / "crds"), "--format", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "ok": True, "files": [{"path": str(ROOT / "crds" / name), "state": "current"} for name in FILES]}


def test_generate_writes_every_file_then_check_is_clean(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "crds"
    result = cli("crds", "generate", "--out", str(out))
    assert (result.exit_code, result.stdout) == (0, "".join(f"wrote {out / name}\n" for name in FILES))
    assert sorted(p.name for p in out.iterdir()) == FILES
    assert {name: (out / name).read_text() for name in FILES} == crds.generate()
    again = cli("crds", "generate", "--out", str(out))
    assert again.stdout == "".join(f"unchanged {out / name}\n" for name in FILES)
    check = cli("crds", "check", "--dir", str(out))
    assert (check.exit_code, check.stdout) == (0, "".join(f"{out / name}: current\n" for name in FILES))


def test_check_reports_stale_missing_and_orphaned_files(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "crds"
    crds.write(out)
    grants = out / "arx.dev_grants.yaml"
    grants.write_text(grants.read_text().replace("maxLength: 64", "maxLength: 65"))
    (out / "arx.dev_policies.yaml").unlink()
    (out / "arx.dev_widgets.yaml").write_text(f"{crds.MARKER} from arxctl/schemas/widget.json; do not edit.\n")
    (out / "notes.yaml").write_text("hand-written: true\n")

    result = cli("crds", "check", "--dir", str(out), "--format", "json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"ok": False, "files": [
        {"path": str(out / "arx.dev_agents.yaml"), "state": "current"},
        {"path": str(out / "arx.dev_connectorcatalogs.yaml"), "state": "current"},
        {"path": str(grants), "state": "stale"},
        {"path": str(out / "arx.dev_policies.yaml"), "state": "missing"},
        {"path": str(out / "kustomization.yaml"), "state": "current"},
        {"path": str(out / "arx.dev_widgets.yaml"), "state": "orphaned"},
    ]}
    text = cli("crds", "check", "--dir", str(out))
    assert text.exit_code == 1
    assert text.stderr == f"{out} is out of date: run `arxctl crds generate --out {out}`\n"

    fixed = cli("crds", "generate", "--out", str(out))
    assert fixed.stdout == (
        f"unchanged {out / 'arx.dev_agents.yaml'}\nunchanged {out / 'arx.dev_connectorcatalogs.yaml'}\n"
        f"wrote {grants}\nwrote {out / 'arx.dev_policies.yaml'}\nunchanged {out / 'kustomization.yaml'}\n"
        f"removed {out / 'arx.dev_widgets.yaml'}\n"
    )
    assert sorted(p.name for p in out.iterdir()) == sorted([*FILES, "notes.yaml"])
    assert cli("crds", "check", "--dir", str(out)).exit_code == 0


def test_check_of_a_file_is_bad_input(cli: Any, tmp_path: Path) -> None:
    target = tmp_path / "crds"
    target.write_text("not a folder")
    result = cli("crds", "check", "--dir", str(target))
    assert (result.exit_code, result.stderr) == (2, f"error: {target}: not a directory\n")


def test_stdout_stream_holds_every_crd(cli: Any) -> None:
    result = cli("crds", "generate", "--stdout")
    assert result.exit_code == 0
    docs = list(YAML(typ="safe", pure=True).load_all(result.stdout))
    assert [d["metadata"]["name"] for d in docs] == [
        "agents.arx.dev", "policies.arx.dev", "grants.arx.dev", "connectorcatalogs.arx.dev"]
    assert docs == [crds.build(kind) for kind in ("Agent", "Policy", "Grant", "ConnectorCatalog")]


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}{{}}")
    if "items" in schema:
        yield from _nodes(schema["items"], f"{path}[]")


@pytest.mark.parametrize("kind", ["Agent", "Policy", "Grant", "ConnectorCatalog"])
def test_every_schema_node_is_structural(kind: str) -> None:
    schema = crds.build(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    problems = []
    for path, node in _nodes(schema):
        if not ({"type", "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields"} & set(node)):
            problems.append(f"{path}: no type")
        forbidden = {"$schema", "$id", "const", "propertyNames", "title"} & set(node)
        if forbidden:
            problems.append(f"{path}: {sorted(forbidden)}")
        if "additionalProperties" in node and ("properties" in node or node["additionalProperties"] is False):
            problems.append(f"{path}: additionalProperties with properties, or false")
    assert problems == []
    name = {"type": "string", "maxLength": 63, "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
            "description": "DNS-1123 label"}
    assert schema["properties"]["metadata"] == {"type": "object", "properties": {"name": name}}


def test_grant_ttl_carries_the_24h_rule() -> None:
    ttl = crds.build("Grant")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"]["ttl"]
    syntax = "!self.matches('^([0-9]+(ms|s|m|h|d))+$')"
    assert ttl == {
        "type": "string",
        "pattern": r"^(\d+(ms|s|m|h|d))+$",
        "description": "duration such as 30s, 15m, 4h, 1h30m",
        "maxLength": 64,
        "x-kubernetes-validations": [
            {"rule": f"{syntax} || self.matches('[1-9]')", "message": "must be greater than zero"},
            {"rule": f"{syntax} || self.findAll('[0-9]+(ms|s|m|h|d)').map(p, p.endsWith('d') ? "
                     "int(p.substring(0, p.size() - 1)) * 86400000 : duration(p).getMilliseconds()).sum() "
                     "<= 86400000",
             "message": "ttl must be at most 24h",
             "messageExpression": "'ttl ' + self + ' exceeds the 24h maximum for a grant'"},
        ],
    }


def test_root_keeps_only_name_in_metadata_and_requires_spec() -> None:
    root = structural_schema(THING, _root({"type": "object", "properties": {"a": {"type": "string"}}}))
    assert root == {
        "description": "",
        "type": "object",
        "properties": {
            "apiVersion": {"description": "The versioned schema of this representation of an object.",
                           "type": "string"},
            "kind": {"description": "The REST resource this object represents.", "type": "string"},
            "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 63,
                                                                   "pattern": "^[a-z]+$"}}},
            "spec": {"type": "object", "properties": {"a": {"type": "string"}}},
        },
        "required": ["spec"],
    }


def test_keywords_are_converted() -> None:
    spec = _spec(THING, {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "mode": {"const": "fixed"},
            "port": {"type": ["string", "integer"]},
            "note": {"type": ["string", "null"], "minLength": 1},
            "tags": {"type": "array", "uniqueItems": True, "items": {"type": "string"}},
            "weight": {"type": "number", "exclusiveMinimum": 0},
            "extra": {"type": "object", "properties": {"k": {"type": "string"}}, "additionalProperties": True},
            "free": {"type": "object"},
            "labels": {"type": "object", "propertyNames": {"pattern": "^[a-z]+$", "maxLength": 8},
                       "additionalProperties": {"type": "string"}},
        },
    })
    assert spec == {"type": "object", "properties": {
        "mode": {"enum": ["fixed"], "type": "string"},
        "port": {"x-kubernetes-int-or-string": True},
        "note": {"nullable": True, "type": "string", "minLength": 1},
        "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
        "weight": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
        "extra": {"type": "object", "properties": {"k": {"type": "string"}},
                  "x-kubernetes-preserve-unknown-fields": True},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}, "x-kubernetes-validations": [
            {"rule": "self.all(k, k.matches(r'^[a-z]+$') && k.size() <= 8)",
             "message": "keys must match ^[a-z]+$ and have at most 8 characters"}]},
    }}


def test_extras_attach_where_declared() -> None:
    info = KindInfo(kind="Thing", plural="things", short_names=(),
                    rules={"spec.items[].n": (Rule("self > 0", "positive"),)},
                    list_map_keys={"spec.items": "id"},
                    untyped=frozenset({"spec.any"}))
    spec = _spec(info, {"type": "object", "properties": {
        "items": {"type": "array", "maxItems": 8, "items": {"type": "object", "required": ["id"], "properties": {
            "id": {"type": "string"}, "n": {"type": "integer"}}}},
        "any": {"type": ["string", "boolean"]},
    }})
    assert spec["properties"] == {
        "items": {"type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "string"},
            "n": {"type": "integer", "x-kubernetes-validations": [{"rule": "self > 0", "message": "positive"}]}},
            "required": ["id"]},
            "maxItems": 8, "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"]},
        "any": {"x-kubernetes-preserve-unknown-fields": True},
    }


@pytest.mark.parametrize(("info", "spec", "message"), [
    (THING, {"type": "object", "properties": {"a": {"type": "string", "format": "email"}}},
     "Thing spec.a: JSON Schema keyword(s) format have no CustomResourceDefinition equivalent"),
    (THING, {"type": "object", "properties": {"a": {"oneOf": [{"type": "string"}]}}},
     "Thing spec.a: JSON Schema keyword(s) oneOf have no CustomResourceDefinition equivalent"),
    (THING, {"type": "object", "properties": {"a": {"type": ["string", "boolean"]}}},
     "Thing spec.a: type union string/boolean is not structural; declare the path in `untyped` to accept any "
     "JSON value there"),
    (THING, {"type": "object", "properties": {"a": {"type": "object"}}, "additionalProperties": {"type": "string"}},
     "Thing spec: properties with an additionalProperties schema is not structural"),
    (KindInfo(kind="Thing", plural="things", short_names=(), rules={"spec.gone": (Rule("true"),)}),
     {"type": "object", "properties": {"a": {"type": "string"}}}, "Thing: no schema node for rules:spec.gone"),
    (KindInfo(kind="Thing", plural="things", short_names=(), list_map_keys={"spec.xs": "id"}),
     {"type": "object", "properties": {"xs": {"type": "array", "items": {"type": "object", "properties": {
         "id": {"type": "string"}}}}}}, "Thing spec.xs: list-map key 'id' must be required"),
    (THING, {"type": "object", "properties": {"m": {"type": "object", "additionalProperties": {"type": "string"},
                                                    "propertyNames": {"format": "hostname"}}}},
     "Thing spec.m: propertyNames keyword(s) format unsupported"),
])
def test_unsupported_schemas_fail_generation(info: KindInfo, spec: dict[str, Any], message: str) -> None:
    with pytest.raises(CrdGenerationError) as caught:
        _spec(info, spec)
    assert str(caught.value) == message
