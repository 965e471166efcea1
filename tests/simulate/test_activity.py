"""`arxctl activity generate`: deterministic, time-ordered, diurnal, sessions and bursts, misbehaving agents."""

from __future__ import annotations

import gzip
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import orjson
import pytest

from arxctl.errors import InputError
from arxctl.policy import activity
from arxctl.policy import simulate as S
from arxctl.resources.validation import check_paths

from .conftest import resources

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
START = datetime(2026, 4, 13, tzinfo=UTC)  # a Monday


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, activity.Summary, list[dict]]:
    folder = tmp_path_factory.mktemp("gen")
    out = folder / "a.ndjson.gz"
    summary = activity.generate_file(resources(EXAMPLES / "manifests", kind="Agent"), agents=40, days=2, seed=11,
                                     start=START, out=out, calls_per_day=300, manifests_out=folder / "fleet.yaml")
    records = [orjson.loads(line) for line in gzip.decompress(out.read_bytes()).splitlines()]
    return folder, summary, records


def test_same_seed_same_activity_other_seed_other_activity(tmp_path: Path) -> None:
    templates = resources(EXAMPLES / "manifests", kind="Agent")
    outs = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        out = tmp_path / f"{name}.ndjson"
        activity.generate_file(templates, agents=12, days=1, seed=seed, start=START, out=out, calls_per_day=200)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert outs[0] != outs[2]


def test_every_line_is_an_activity_record_in_time_order(generated) -> None:
    _, summary, records = generated
    assert summary.events == len(records)
    assert summary.first_ts == records[0]["ts"] and summary.last_ts == records[-1]["ts"]
    decoder = msgspec.json.Decoder(S.Activity)
    times = [decoder.decode(orjson.dumps(r)).ts for r in records]
    assert times == sorted(times)
    assert times[0] >= START and times[-1] < START + timedelta(days=2)
    # 40 agents x 2 weekdays x 300 calls, weekdays weighted up against the quiet weekend: about 29,500
    assert 18_000 < summary.events < 32_000


def test_load_follows_the_working_day(generated) -> None:
    _, _, records = generated
    by_hour = Counter(int(r["ts"][11:13]) for r in records)
    # 32 of the 40 agents are in us-east (UTC-5), 8 in eu-west (UTC): 13-16 UTC is everyone's working day,
    # 02-07 UTC is night for both
    assert min(by_hour[h] for h in range(13, 17)) > 4 * max(by_hour[h] for h in range(2, 8))


def test_sessions_belong_to_one_agent_and_some_are_bursts(generated) -> None:
    _, _, records = generated
    sessions: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        sessions[r["session"]].append(r)
    assert all(len({r["agent"] for r in calls}) == 1 for calls in sessions.values())
    bursts = [calls for calls in sessions.values() if len(calls) >= 25 and
              (datetime.fromisoformat(calls[-1]["ts"]) - datetime.fromisoformat(calls[0]["ts"])).total_seconds()
              < 25 * 1.6]
    assert bursts


def test_misbehaving_agents_do_what_their_profile_says(generated) -> None:
    folder, summary, records = generated
    assert summary.agents == 40
    assert len(summary.misbehaving) == 1
    fleet = {d["metadata"]["name"]: d for d in resources(folder / "fleet.yaml", kind="Agent")}
    declared = {name: {a for c in d["spec"]["connectors"] for a in c["actions"]} for name, d in fleet.items()}
    undeclared = Counter(r["agent"] for r in records if r["action"] not in declared[r["agent"]])
    assert set(undeclared) == {n for n, kinds in summary.misbehaving.items() if "undeclared" in kinds}


def test_the_fleet_manifests_validate(generated) -> None:
    folder, _, _ = generated
    report = check_paths([folder / "fleet.yaml"])
    assert report.ok, [d.render() for d in report.diagnostics]
    names = [r.name for r in report.resources]
    assert len(names) == len(set(names)) == 40
    assert names[:5] == sorted(d["metadata"]["name"] for d in resources(EXAMPLES / "manifests", kind="Agent"))


def test_bad_arguments(tmp_path: Path) -> None:
    templates = resources(EXAMPLES / "manifests", kind="Agent")
    with pytest.raises(InputError, match="--agents must be at least 1"):
        activity.build_fleet(templates, 0, 1)
    with pytest.raises(InputError, match="--days must be at least 1"):
        list(activity.generate(activity.build_fleet(templates, 2, 1), days=0, seed=1, start=START))
    with pytest.raises(InputError, match="--start"):
        activity.start_from("someday", START, 3)
    assert activity.start_from(None, datetime(2026, 4, 20, 15, tzinfo=UTC), 3) == datetime(2026, 4, 17, tzinfo=UTC)


def test_cli_generates_and_simulate_replays_it(cli, state_dir: Path) -> None:
    result = cli("activity", "generate", "--manifests", str(EXAMPLES / "manifests"), "--agents", "7", "--days", "1",
                 "--seed", "2", "--calls-per-day", "100", "--start", "2026-04-14", "--out", "a.ndjson.gz",
                 "--write-manifests", "fleet.yaml", "--json")
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout)
    lines = gzip.decompress((state_dir.parent / "a.ndjson.gz").read_bytes()).splitlines()
    assert summary["events"] == len(lines)
    assert summary["agents"] == 7
    assert summary["first_ts"].startswith("2026-04-14T")
    replay = cli("simulate", "a.ndjson.gz", "--manifests", "fleet.yaml", "--policy", str(EXAMPLES / "policies"),
                 "--baseline", str(EXAMPLES / "policies"), "-f", "json")
    assert replay.exit_code == 0, replay.output
    report = orjson.loads(replay.stdout)
    assert report["events"] == len(lines)
    assert report["flips"] == []
    assert "agent-unknown" not in report["by_reason"]["proposed"]
