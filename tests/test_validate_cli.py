"""`arxctl validate` output formats, catalogs and folders."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES

BROKEN = """apiVersion: arx.dev/v1alpha1
kind: Agent
metadata: {name: acme-bot}
spec:
  owner: {name: A, email: a@bank.example}
  purpose: p
  connectors:
    - name: acme-ticketing
      actions: [acme-ticketing.ticket.close]
"""

# Known fields of the wrong type (once crashes): each document and the one diagnostic it gets (line:col: ...).
MALFORMED = {
    "kind-list": (
        "apiVersion: arx.dev/v1alpha1\nkind: [Policy]\nmetadata: {name: p}\nspec:\n  rules: []\n",
        "2:7: ARX004 $.kind: kind must be a string, got array; one of: Agent, Policy, Grant, ConnectorCatalog",
    ),
    "kind-mapping": (
        "apiVersion: arx.dev/v1alpha1\nkind: {Policy: 1}\nmetadata: {name: p}\nspec:\n  rules: []\n",
        "2:7: ARX004 $.kind: kind must be a string, got object; one of: Agent, Policy, Grant, ConnectorCatalog",
    ),
    "rules-integer": (
        "apiVersion: arx.dev/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspec:\n  rules: 5\n",
        "5:10: ARX103 $.spec.rules: expected array, got integer",
    ),
    "rules-boolean": (
        "apiVersion: arx.dev/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspec:\n  rules: true\n",
        "5:10: ARX103 $.spec.rules: expected array, got boolean",
    ),
}

ENFORCED = [EXAMPLES / "catalogs", EXAMPLES / "manifests", EXAMPLES / "policies"]


def _yaml_count(folders: list[Path]) -> int:
    return sum(1 for folder in folders for f in folder.rglob("*") if f.suffix in (".yaml", ".yml"))


def test_examples_are_clean(cli) -> None:
    result = cli("validate", *map(str, ENFORCED))
    assert result.exit_code == 0, result.stdout
    assert result.stdout == f"ok: {_yaml_count(ENFORCED)} file(s) valid\n"
    proposed = cli("validate", str(EXAMPLES / "proposed"))
    assert proposed.exit_code == 0, proposed.stdout
    assert proposed.stdout == f"ok: {_yaml_count([EXAMPLES / 'proposed'])} file(s) valid\n"


def test_one_input_cannot_define_a_policy_twice(cli) -> None:
    result = cli("validate", str(EXAMPLES / "policies"), str(EXAMPLES / "proposed"))
    assert result.exit_code == 1
    rules = [line.split(": ")[1].split()[0] for line in result.stdout.splitlines()[:-1]]
    assert rules == ["ARX111"] * _yaml_count([EXAMPLES / "proposed"])


def test_json_format(cli, tmp_path: Path) -> None:
    f = tmp_path / "agent.yaml"
    f.write_text(BROKEN)
    result = cli("validate", str(f), "--format", "json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc == {
        "ok": False,
        "diagnostics": [
            {
                "path": str(f), "line": 8, "col": 13, "rule": "ARX120", "severity": "error",
                "message": "unknown connector 'acme-ticketing'", "json_path": "$.spec.connectors[0].name",
            },
            {
                "path": str(f), "line": 9, "col": 17, "rule": "ARX121", "severity": "error",
                "message": "unknown action 'acme-ticketing.ticket.close'",
                "json_path": "$.spec.connectors[0].actions[0]",
            },
        ],
    }


def test_catalog_option_extends_the_catalog(cli, tmp_path: Path) -> None:
    f = tmp_path / "agent.yaml"
    f.write_text(BROKEN)
    result = cli("validate", str(f), "--catalog", str(EXAMPLES / "catalogs" / "acme.yaml"))
    assert result.exit_code == 0, result.stdout
    assert result.stdout == "ok: 1 file(s) valid\n"


def test_registered_catalog_extends_the_catalog(cli, tmp_path: Path) -> None:
    assert cli("register", str(EXAMPLES / "catalogs" / "acme.yaml")).exit_code == 0
    f = tmp_path / "agent.yaml"
    f.write_text(BROKEN)
    assert cli("validate", str(f)).exit_code == 0


def test_sarif_format(cli, tmp_path: Path) -> None:
    f = tmp_path / "agent.yaml"
    f.write_text(BROKEN)
    result = cli("validate", str(f), "--format", "sarif")
    assert result.exit_code == 1
    sarif = json.loads(result.stdout)
    assert sarif["version"] == "2.1.0"
    run = sarif["runs"][0]
    rule_ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert rule_ids == sorted(rule_ids) and "ARX120" in rule_ids
    first = run["results"][0]
    assert first["ruleId"] == "ARX120"
    assert rule_ids[first["ruleIndex"]] == "ARX120"
    assert first["level"] == "error"
    assert first["locations"][0]["physicalLocation"]["region"] == {"startLine": 8, "startColumn": 13}
    assert first["partialFingerprints"] == {"arxctl/v1": f"ARX120:{f}:$.spec.connectors[0].name"}


def test_junit_format_one_testcase_per_file(cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BROKEN)
    good = EXAMPLES / "manifests" / "triage-cs-01.yaml"
    result = cli("validate", str(bad), str(good), "--format", "junit")
    assert result.exit_code == 1
    root = ET.fromstring(result.stdout)
    suite = root.find("testsuite")
    assert suite is not None
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {str(bad), str(good)}
    failure = cases[str(bad)].find("failure")
    assert failure is not None and failure.get("type") == "ARX120"
    assert cases[str(good)].find("failure") is None


def test_folder_recursion_and_missing_path(cli, tmp_path: Path) -> None:
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    (nested / "agent.yml").write_text(BROKEN)
    (nested / "notes.txt").write_text("not yaml")
    result = cli("validate", str(tmp_path))
    assert result.exit_code == 1
    assert result.stdout.splitlines()[-1] == "2 error(s), 0 warning(s) in 1 file(s)"
    missing = cli("validate", str(tmp_path / "nope.yaml"))
    assert missing.exit_code == 2
    assert missing.stdout.splitlines()[0] == f"{tmp_path / 'nope.yaml'}:1:1: ARX002 $: no such file or directory"


def test_huge_file_is_refused_with_a_position(cli, tmp_path: Path) -> None:
    f = tmp_path / "huge.yaml"
    f.write_text("a: " + "x" * (5 * 1024 * 1024) + "\n")
    result = cli("validate", str(f))
    assert result.exit_code == 2
    assert result.stdout.startswith(f"{f}:1:1: ARX002 $: file is ")


def test_quiet_prints_only_diagnostics(cli) -> None:
    result = cli("validate", "--quiet", *map(str, ENFORCED))
    assert result.exit_code == 0
    assert result.stdout == ""


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_wrong_type_of_a_known_field_is_a_finding(cli, tmp_path: Path, name: str) -> None:
    text, diagnostic = MALFORMED[name]
    f = tmp_path / f"{name}.yaml"
    f.write_text(text)
    result = cli("validate", str(f))
    assert (result.exit_code, result.stderr) == (1, ""), result.output
    assert result.stdout == f"{f}:{diagnostic}\n1 error(s), 0 warning(s) in 1 file(s)\n"


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_wrong_type_of_a_known_field_is_bad_input_for_policy_commands(cli, tmp_path: Path, name: str) -> None:
    text, diagnostic = MALFORMED[name]
    f = tmp_path / f"{name}.yaml"
    f.write_text(text)
    explain = cli("policy", "explain", "--agent", "a", "--action", "aws.s3.get_object", "--policy", str(f))
    assert (explain.exit_code, explain.stdout) == (2, ""), explain.output
    assert explain.stderr == f"{f}:{diagnostic}\nerror: the --policy files are not valid\n"
    register = cli("register", str(f))
    assert (register.exit_code, register.stdout) == (2, ""), register.output
    assert register.stderr == f"{f}:{diagnostic}\nerror: nothing was registered\n"
