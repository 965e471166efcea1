"""Fuzzing the YAML and resource loader: never a traceback; unreadable input always has a position."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from arxctl.resources.validation import INPUT_RULES, check_paths, check_text
from tests.conftest import EXAMPLES

VALID = (EXAMPLES / "manifests" / "triage-cs-01.yaml").read_text()
POLICY = (EXAMPLES / "policies" / "change-control.yaml").read_text()

json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_tree = st.recursive(
    json_leaf,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


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
