"""`arxctl gateway`: serve refuses bad options with exit 2; health reads what the replicas left behind."""

from __future__ import annotations

import json

import pytest

from arxctl.sdk import CallDenied, Connector
from tests.gateway.helpers import AGENT, GatewayProcess, World, main_records, until


def test_serve_rejects_bad_options(cli, world: World) -> None:
    result = cli("gateway", "serve", "--listen", "8080")
    assert (result.exit_code, result.stderr) == (2, "error: --listen '8080': use HOST:PORT, e.g. 0.0.0.0:8080\n")
    result = cli("gateway", "serve", "--bundle", str(world.state))
    assert (result.exit_code, result.stderr) == (
        2, "error: --bundle needs --secrets DIR (the mounted Secret holding platform.key and credentials)\n")
    result = cli("gateway", "serve", "--publish-every", "soon")
    assert (result.exit_code, result.stderr) == (
        2, "error: --publish-every: invalid duration 'soon': use a number and a unit, e.g. 30s, 15m, 4h, 1h30m, 7d\n")
    bad = world.state.parent / "bad-gateway.yaml"
    bad.write_text("connectors:\n  slack: {base_url: 'ftp://slack.com'}\n")
    result = cli("gateway", "serve", "--config", str(bad))
    assert (result.exit_code, result.stderr) == (
        2, f"error: {bad}:2:21: ARX103 $.connectors.slack.base_url: must be an http(s) URL with a host\n")
    cluster = world.state.parent / "cluster-gateway.yaml"
    cluster.write_text("cluster: {status_every: 30s}\n")
    result = cli("gateway", "serve", "--config", str(cluster))
    assert (result.exit_code, result.stderr) == (
        2, f"error: {cluster}: the `cluster` section applies with --bundle (with --state, live drift holds go into "
           "the registry)\n")


def test_health_reads_every_replica(cli, world: World, gateway: GatewayProcess) -> None:
    sn = Connector("servicenow", gateway=gateway.url, handle=world.tokens["servicenow"])
    sn.call("change.read", {"sys_id": "chg-1"})
    with pytest.raises(CallDenied):
        sn.call("change.delete", {"sys_id": "chg-1"})
    until(lambda: main_records(world.state, "agent.suspended") != [], 3.0, "live drift suspension")
    assert gateway.stop() == 0
    result = cli("gateway", "health", AGENT, "-o", "json")
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown == {AGENT: {
        "last_seen": shown[AGENT]["last_seen"], "calls_per_minute": 2, "deny_rate": 0.5, "calls": 2, "denied": 1,
        "approvals": 0, "undeclared_attempts": 1, "downstream_errors": 0,
        "drift": {"severity": "critical", "response": "suspend", "applied": "suspended"}, "replicas": ["gw-a"]}}
    table = cli("gateway", "health")
    assert table.stdout.splitlines() == [
        "AGENT         LAST SEEN                    CALLS/MIN  DENY RATE  UNDECLARED  DRIFT                  REPLICAS",
        f"triage-cs-01  {shown[AGENT]['last_seen']}  2          50%        1           critical -> suspended  gw-a    ",
    ]
    agent = json.loads(cli("agents", "show", AGENT, "-o", "json").stdout)
    assert agent["gateway"] == shown[AGENT]
    assert [line for line in cli("agents", "show", AGENT).stdout.splitlines() if line.startswith("gateway:")] == [
        f"gateway:  last seen {shown[AGENT]['last_seen']}, 2 calls/min, deny rate 50%, 1 undeclared attempts, "
        "drift critical -> suspended"]
