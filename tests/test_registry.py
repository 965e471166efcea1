"""`arxctl register` and `arxctl agents`: immutable versions, selectors, graphs, history and rollback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from arxctl.chain import store as chain
from arxctl.store.sqlite import open_store
from tests.conftest import EXAMPLES

MANIFESTS = EXAMPLES / "manifests"
AGENT_NAMES = sorted(p.stem for p in MANIFESTS.glob("*.yaml"))


def _chain_types(state: Path) -> list[str]:
    store = open_store(state, create=False)
    try:
        return [json.loads(line)["type"] for line in chain.iter_lines(store.conn)]
    finally:
        store.close()


def test_register_then_reregister_is_a_noop(cli, state_dir: Path) -> None:
    first = cli("register", str(MANIFESTS), "--reason", "initial import")
    assert first.exit_code == 0, first.stderr
    assert first.stdout.splitlines() == [f"agent/{n} registered v1" for n in AGENT_NAMES]
    again = cli("register", str(MANIFESTS))
    assert again.stdout.splitlines() == [f"agent/{n} unchanged (v1)" for n in AGENT_NAMES]
    assert _chain_types(state_dir) == ["agent.registered"] * len(AGENT_NAMES)
    assert cli("chain", "verify").exit_code == 0


def test_changed_content_is_a_new_version(cli, state_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "agent.yaml"
    shutil.copy(MANIFESTS / "triage-cs-01.yaml", src)
    assert cli("register", str(src)).exit_code == 0
    src.write_text(src.read_text().replace("region: us-east", "region: us-west"))
    result = cli("register", str(src), "--reason", "moved region")
    assert result.stdout == "agent/triage-cs-01 registered v2\n"
    assert _chain_types(state_dir) == ["agent.registered", "agent.version"]
    history = json.loads(cli("agents", "history", "triage-cs-01", "-o", "json").stdout)
    assert [h["version"] for h in history] == [1, 2]
    assert history[1]["reason"] == "moved region"
    assert history[1]["actor"] == "tester"
    assert history[1]["changes"] == [
        {"op": "replace", "path": "$.metadata.labels.region", "old": "us-east", "new": "us-west"}
    ]


def test_invalid_input_stores_nothing(cli, state_dir: Path, tmp_path: Path) -> None:
    assert cli("register", str(MANIFESTS / "pr-reviewer.yaml")).exit_code == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text((MANIFESTS / "triage-cs-01.yaml").read_text().replace("servicenow.change.close", "servicenow.x.y"))
    good = MANIFESTS / "incident-responder.yaml"
    result = cli("register", str(good), str(bad))
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == "error: nothing was registered"
    assert "ARX121" in result.stderr.splitlines()[0]
    assert _chain_types(state_dir) == ["agent.registered"]
    names = [a["name"] for a in json.loads(cli("agents", "list", "-o", "json").stdout)]
    assert names == ["pr-reviewer"]


def test_list_with_both_selector_syntaxes(cli) -> None:
    assert cli("register", str(MANIFESTS)).exit_code == 0
    k8s = json.loads(cli("agents", "list", "-l", "env=prod,region=us-east", "-o", "json").stdout)
    brief = json.loads(cli("agents", "list", "-l", "env:prod/region:us-east", "-o", "json").stdout)
    assert [a["name"] for a in k8s] == ["cloud-posture-remediation", "incident-responder", "triage-cs-01"]
    assert brief == k8s
    negated = json.loads(cli("agents", "list", "-l", "env!=prod", "-o", "json").stdout)
    assert [a["name"] for a in negated] == ["triage-cs-02"]


def test_show_reports_graph_and_blast_radius(cli) -> None:
    assert cli("register", str(MANIFESTS), str(EXAMPLES / "policies")).exit_code == 0
    shown = json.loads(cli("agents", "show", "triage-cs-01", "-o", "json").stdout)
    assert shown["owner"]["name"] == "Dana Reyes"
    assert shown["status"] == "active"
    graph = shown["graph"]
    assert graph["thresholds"] == {"review": 60, "deny": 80}
    close = next(e for e in graph["edges"] if e["action"] == "servicenow.change.close")
    # write 20 + confidential 16 + prod 20 = 56; frequency cap 15 -> 71.
    assert close["operation"] == "write"
    assert close["score_range"] == [56, 71]
    assert "change-close-over-one" in close["gated_by"]
    assert graph["blast_radius"] == {"score": max(e["score_range"][1] for e in graph["edges"]),
                                     "verdict": "APPROVAL_REQUIRED"}


def test_graph_formats(cli) -> None:
    assert cli("register", str(MANIFESTS)).exit_code == 0
    mermaid = cli("agents", "graph", "triage-cs-01").stdout
    assert mermaid.splitlines()[0] == "flowchart LR"
    assert '  n_a_servicenow_change_close("servicenow.change.close")' in mermaid.splitlines()
    dot = cli("agents", "graph", "triage-cs-01", "--format", "dot").stdout
    assert dot.splitlines()[0] == 'digraph "triage-cs-01" {'
    assert dot.rstrip().endswith("}")


def test_rollback_makes_a_new_version_with_the_diff(cli, state_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "agent.yaml"
    shutil.copy(MANIFESTS / "triage-cs-01.yaml", src)
    cli("register", str(src))
    src.write_text(src.read_text().replace("team: secops}", "team: secops, tier: gold}", 1))
    assert cli("register", str(src)).stdout == "agent/triage-cs-01 registered v2\n"
    result = cli("agents", "rollback", "triage-cs-01", "--to", "1", "--reason", "tier label was a mistake")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "agent/triage-cs-01 rolled back to the content of v1 as v3 (chain seq 3)",
        "  remove $.metadata.labels.tier",
    ]
    store = open_store(state_dir, create=False)
    record = chain.tail(store.conn, 1)[0]
    assert record.type == "agent.rolled_back"
    assert record.body["from_version"] == 2 and record.body["to_version"] == 1 and record.body["version"] == 3
    assert record.body["reason"] == "tier label was a mistake"
    assert record.actor == "tester"
    v1 = json.loads(cli("agents", "show", "triage-cs-01", "--version", "1", "-o", "json").stdout)
    v3 = json.loads(cli("agents", "show", "triage-cs-01", "-o", "json").stdout)
    assert v1["digest"] == v3["digest"]
    again = cli("agents", "rollback", "triage-cs-01", "--to", "1", "--reason", "again")
    assert again.exit_code == 2
    assert again.stderr == "error: agent 'triage-cs-01' version 3 already has the content of version 1\n"


def test_unknown_agent_and_version(cli) -> None:
    cli("register", str(MANIFESTS / "pr-reviewer.yaml"))
    missing = cli("agents", "show", "nobody")
    assert missing.exit_code == 2 and missing.stderr == "error: no agent 'nobody'\n"
    bad_version = cli("agents", "show", "pr-reviewer", "--version", "7")
    assert bad_version.stderr == "error: agent 'pr-reviewer' has no version 7 (versions 1..1)\n"


def test_commands_need_state(cli) -> None:
    result = cli("agents", "list")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no arxctl state at ")


def test_policies_and_catalogs_are_registered(cli, state_dir: Path) -> None:
    result = cli("register", str(EXAMPLES / "policies"), str(EXAMPLES / "catalogs"))
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == "connectorcatalog/acme registered v1"
    types = _chain_types(state_dir)
    assert types[0] == "catalog.registered"
    assert set(types[1:]) == {"policy.registered"}
