"""`simulate --record` leaves a `policy.simulated` chain record that `assess` reads."""

from __future__ import annotations

import json

from tests.conftest import EXAMPLES

SAMPLE = str(EXAMPLES / "activity" / "sample.ndjson")


def test_record_appends_policy_simulated(cli) -> None:
    registered = cli("register", str(EXAMPLES / "catalogs"), str(EXAMPLES / "manifests"), str(EXAMPLES / "policies"))
    assert registered.exit_code == 0, registered.stderr
    report = json.loads(cli("simulate", SAMPLE, "-f", "json", "-q").stdout)
    recorded = cli("simulate", SAMPLE, "--record", "-q", "--as", "sec-eng")
    assert recorded.exit_code == 0, recorded.stderr
    last = json.loads(cli("chain", "show", "-n", "1", "-o", "json").stdout)[0]
    assert last["type"] == "policy.simulated"
    assert last["actor"] == "sec-eng"
    assert last["agent"] is None
    body = last["body"]
    assert body["policy_revision"] == report["sides"]["proposed"]["revision"]
    assert body["events"] == report["events"] == 43
    assert body["proposed_counts"] == report["proposed"]
    assert body["flips"] == report["flips"] == []
    assert body["ok"] is True
    assert cli("chain", "verify").exit_code == 0
    assessed = json.loads(cli("assess", "-f", "json").stdout)
    simulation = next(c for c in assessed["checks"] if c["id"] == "simulation")
    assert simulation["ok"] is True


def test_without_record_nothing_is_appended(cli) -> None:
    cli("register", str(EXAMPLES / "manifests"), str(EXAMPLES / "policies"))
    before = json.loads(cli("chain", "verify", "--format", "json").stdout)["records"]
    assert cli("simulate", SAMPLE, "-q").exit_code == 0
    after = json.loads(cli("chain", "verify", "--format", "json").stdout)["records"]
    assert after == before
