"""Fuzzing the YAML and resource loader: never a traceback; unreadable input always has a position."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from arxctl.resources.schema_errors import type_name
from arxctl.resources.validation import INPUT_RULES, check_paths, check_text
from arxctl.resources.yamlio import parse_text
from tests.conftest import EXAMPLES

VALID = (EXAMPLES / "manifests" / "triage-cs-01.yaml").read_text()
POLICY = (EXAMPLES / "policies" / "change-control.yaml").read_text()
STATIC_POLICY = """# valid, and every static check (ARX152) fires
apiVersion: arx.dev/v1alpha1
kind: Policy
metadata: {name: static}
spec:
  thresholds: {review: 25, deny: 40}
  rules:
    - {name: never, when: servicenow.change.close, if: "false", then: {deny: {reason: r}}}
    - {name: above-deny, when: okta.user.suspend, then: {deny: {reason: r}}}
    - {name: all-iam, when: aws.iam.*, then: {deny: {reason: r}}}
    - name: ask-iam
      when: aws.iam.create_access_key
      if: size(payload) > 0
      then: {approvalRequired: {severity: high, approvers: {group: g}, timeout: 1h}}
"""
GRANT = """apiVersion: arx.dev/v1alpha1
kind: Grant
metadata: {name: fix-bucket-acl}
spec:
  agent: cloud-posture-remediation
  actions: [aws.s3.put_bucket_acl]
  scope: {bucket: bank-logs-prod}
  ttl: 4h
  reason: Remediate a public ACL
"""

json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_tree = st.recursive(
    json_leaf,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
# A value of the wrong type for a known field; mappings use field names so that nested checks get a look in.
wrong_type = (
    st.none() | st.booleans() | st.integers(-5, 200) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8) | st.lists(json_leaf, max_size=3)
    | st.dictionaries(st.sampled_from(["name", "when", "if", "then", "deny", "approvalRequired", "rules",
                                       "connectors", "actions", "x"]), json_leaf | st.lists(json_leaf, max_size=2),
                      max_size=3)
)
WELL_TYPED = [
    parse_text(text, "base.yaml")[0][0].data
    for text in (VALID, POLICY, STATIC_POLICY, GRANT, (EXAMPLES / "catalogs" / "acme.yaml").read_text())
]
# Fields whose type alone decides: any other JSON type is an error.
TYPE_DECIDES = {("kind",), ("apiVersion",), ("metadata",), ("metadata", "name"), ("spec",), ("spec", "rules")}


def _field_paths(node: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every path to a value in a document (not the root)."""
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    out: list[tuple[str | int, ...]] = []
    for key, value in children:
        out.append((*prefix, key))
        out.extend(_field_paths(value, (*prefix, key)))
    return out


def _value_at(node: Any, path: tuple[str | int, ...]) -> Any:
    """The value at `path` in a document."""
    for key in path:
        node = node[key]
    return node


def _replaced(node: Any, path: tuple[str | int, ...], value: Any) -> Any:
    """A copy of `node` with the value at `path` replaced."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(node, dict):
        return {k: _replaced(v, rest, value) if k == head else v for k, v in node.items()}
    return [_replaced(v, rest, value) if i == head else v for i, v in enumerate(node)]


def _assert_well_formed(report, text: str) -> None:
    lines = len(re.split(r"\r\n|[\n\r\x85\u2028\u2029]", text)) + 1  # YAML's line breaks
    for d in report.diagnostics:
        assert d.line >= 1 and d.col >= 1
        assert d.line <= lines, (d, lines)
        assert d.rule.startswith("ARX")
        assert d.message


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
@example("a:\n\tb: 1\n")
@example("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[")
@example("a: &x [*x]\n")
@example("--- !!python/object:os.system\nx: 1\n")
@example("a: !!binary AAAA\n")
@example("? [a, b]\n: c\n")
@example("a: 2026-04-14\nb: 0x1F\nc: .inf\n")
@example("apiVersion: arx.dev/v1alpha1\nkind: Policy\nmetadata: change-control\nspec: {rules: []}\n")
@example("a: 1\u2028b: [\n")
@example("kind: Agent\napiVersion: arx.dev/v1alpha1\nmetadata: {name: 1}\nspec: []\n")
@example("apiVersion: arx.dev/v1alpha1\nkind: [Policy]\nmetadata: {name: p}\n")
@example("apiVersion: arx.dev/v1alpha1\nkind: {Policy: 1}\nmetadata: {name: p}\n")
@example("apiVersion: arx.dev/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspec: {rules: 5}\n")
@example("apiVersion: arx.dev/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspec: {rules: true}\n")
def test_arbitrary_text_never_raises(text: str) -> None:
    report = check_text(text, "fuzz.yaml")
    _assert_well_formed(report, text)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_manifests_never_raise(data) -> None:
    base = data.draw(st.sampled_from([VALID, POLICY]))
    pos = data.draw(st.integers(0, len(base)))
    cut = data.draw(st.integers(0, 20))
    insert = data.draw(st.text(alphabet=st.sampled_from(list(" \t\n:-[]{}#&*!|>'\"%@`,?x0")), max_size=8))
    text = base[:pos] + insert + base[pos + cut:]
    report = check_text(text, "mutant.yaml")
    _assert_well_formed(report, text)


@settings(max_examples=200, deadline=None)
@given(json_tree, st.sampled_from(["Agent", "Policy", "Grant", "ConnectorCatalog"]))
def test_arbitrary_spec_shapes_never_raise(spec, kind: str) -> None:
    import json

    doc = {"apiVersion": "arx.dev/v1alpha1", "kind": kind, "metadata": {"name": "x"}, "spec": spec}
    text = json.dumps(doc)  # JSON is YAML
    report = check_text(text, "shape.yaml")
    _assert_well_formed(report, text)
    assert not report.ok or kind == "Policy" or report.resources


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_known_fields_of_the_wrong_type_never_raise(data) -> None:
    base = data.draw(st.sampled_from(WELL_TYPED))
    drawn = data.draw(st.lists(st.sampled_from(_field_paths(base)), min_size=1, max_size=3, unique=True))
    paths = [p for p in drawn if not any(p[:n] in drawn for n in range(1, len(p)))]  # no field inside another
    doc = base
    wrong = False
    for path in paths:
        value = data.draw(wrong_type)
        wrong |= path in TYPE_DECIDES and type_name(value) != type_name(_value_at(base, path))
        doc = _replaced(doc, path, value)
    text = json.dumps(doc)  # JSON is YAML
    report = check_text(text, "typed.yaml")
    _assert_well_formed(report, text)
    assert not (wrong and report.ok), report.diagnostics
    assert len(report.resources) == (1 if report.ok else 0), "a document is accepted exactly when it has no error"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_from_disk(tmp_path: Path, raw: bytes) -> None:
    f = tmp_path / "blob.yaml"
    f.write_bytes(raw)
    report = check_paths([f])
    for d in report.diagnostics:
        assert d.line >= 1 and d.col >= 1
    if report.input_error:
        assert any(d.rule in INPUT_RULES for d in report.diagnostics)


def test_regression_alias_bomb_is_bounded() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 9):
        bomb += f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 10) + "]\n"
    report = check_text(bomb, "bomb.yaml")
    assert [d.rule for d in report.diagnostics] == ["ARX001"]
    assert "alias expansion" in report.diagnostics[0].message


def test_regression_integer_beyond_64_bits() -> None:
    text = "apiVersion: arx.dev/v1alpha1\nkind: Grant\nmetadata: {name: g}\nspec:\n  scope: {n: 99999999999999999999}\n"
    report = check_text(text, "big.yaml")
    assert [d.render() for d in report.diagnostics] == [
        "big.yaml:5:14: ARX001 $.spec.scope.n: integer out of the 64-bit range"
    ]


def test_regression_deep_nesting() -> None:
    report = check_text("[" * 5000 + "]" * 5000, "deep.yaml")
    assert report.diagnostics and report.diagnostics[0].rule == "ARX001"
