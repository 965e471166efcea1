"""Splitting by agent across worker processes gives the report of a single process, byte for byte."""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from arxctl.policy import activity
from arxctl.policy import simulate as S
from arxctl.policy.catalog import builtin

from .conftest import ACTIVITY, make_spec, resources, run

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def fleet_activity(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, S.ReplaySpec]:
    """A day of a 30-agent fleet built from the example manifests, with a stricter proposed policy set."""
    folder = tmp_path_factory.mktemp("fleet")
    templates = resources(EXAMPLES / "manifests", kind="Agent")
    out = folder / "activity.ndjson.gz"
    summary = activity.generate_file(templates, agents=30, days=1, seed=3, start=datetime(2026, 4, 14, tzinfo=UTC),
                                     out=out, calls_per_day=400, manifests_out=folder / "fleet.yaml")
    assert summary.events > 5000
    policies = resources(EXAMPLES / "policies", kind="Policy")
    proposed = copy.deepcopy(list(policies))
    proposed[0]["spec"]["thresholds"] = {"review": 55, "deny": 75}
    proposed[1]["spec"]["rules"].append({"name": "no-session-clear-bursts", "when": "okta.session.clear",
                                         "if": "session.count > 2", "then": {"deny": {"reason": "burst"}}})
    spec = S.ReplaySpec(
        baseline=S.PolicySource("examples", policies), proposed=S.PolicySource("stricter", tuple(proposed)),
        agents=S.manifest_snapshots(resources(folder / "fleet.yaml", kind="Agent")), catalog=builtin(),
    )
    return out, spec


def test_four_workers_equal_one(fleet_activity: tuple[Path, S.ReplaySpec]) -> None:
    path, spec = fleet_activity
    one = run(spec, path)
    four = run(spec, path, workers=4)
    assert one["flips"], "the proposed set must change some verdicts for this test to mean anything"
    assert orjson.dumps(four) == orjson.dumps(one)


def test_workers_with_malformed_lines_and_examples(tmp_path: Path) -> None:
    lines = ACTIVITY.read_bytes().splitlines()
    path = tmp_path / "a.ndjson"
    path.write_bytes(b"\n".join([b"{oops", *lines[:10], b'{"agent":"dev-bot"}', *lines[10:], b"[]"]) + b"\n")
    spec = dataclasses.replace(make_spec(), examples=1)
    assert orjson.dumps(run(spec, path, workers=3)) == orjson.dumps(run(spec, path))


def test_strict_workers_report_the_first_malformed_line(tmp_path: Path) -> None:
    lines = ACTIVITY.read_bytes().splitlines()
    path = tmp_path / "a.ndjson"
    path.write_bytes(b"\n".join([*lines[:3], b'{"agent":"dev-bot"}', *lines[3:8], b"{oops", *lines[8:]]) + b"\n")
    with pytest.raises(S.StrictError) as caught:
        run(make_spec(strict=True), path, workers=2)
    assert str(caught.value) == f"{path}:4: Object missing required field `ts` (--strict)"
