"""Reading observed activity: NDJSON and gzip streams, exact errors with positions, the chain's decisions."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import pytest

from arxctl.errors import InputError
from arxctl.policy.catalog import builtin
from arxctl.policy.engine import Call
from arxctl.policy.state import decide_call
from arxctl.registry import config as project
from arxctl.registry import drift, grants
from arxctl.store.sqlite import Store
from tests.drift.helpers import T0, manifest
from tests.lifecycle.helpers import register

LINES = [
    b'{"ts":"2026-04-14T10:00:00Z","agent":"triage","session":"s-1","action":"servicenow.change.read",'
    b'"target":{"system":"servicenow-prod","env":"prod"},"payload":{"number":"CHG1"},"verdict":"ALLOW"}',
    b"",
    b'{"ts":"2026-04-14T10:00:05.250000+02:00","agent":"triage","action":"github.pulls.read","operation":"read"}',
]


def read(path: Path) -> list[drift.Event]:
    with drift.open_activity(path) as stream:
        return list(drift.iter_activity(stream, str(path)))


@pytest.mark.parametrize("compressed", [False, True])
def test_plain_and_gzip_activity_stream_the_same_events(tmp_path: Path, compressed: bool) -> None:
    path = tmp_path / "activity.json"
    data = b"\n".join(LINES) + b"\n"
    path.write_bytes(gzip.compress(data) if compressed else data)
    assert read(path) == [
        drift.Event(T0, "triage", "servicenow.change.read", "servicenow-prod", "prod", None, {"number": "CHG1"},
                    f"{path}:1"),
        drift.Event(datetime(2026, 4, 14, 8, 0, 5, 250000, tzinfo=UTC), "triage", "github.pulls.read", None, None,
                    "read", {}, f"{path}:3"),
    ]


@pytest.mark.parametrize(("line", "message"), [
    (b'{"ts": ', "3:8: not valid JSON: unexpected end of data"),
    (b'{"agent":"a","ts":"2026-04-14T10:00:00Z"}', "3:1: activity record is missing field 'action'"),
    (b'{"agent":"a","action":"x.y.z","ts":"yesterday"}', "3:31: ts 'yesterday' is not an RFC 3339 timestamp"),
    (b'{"ts":"2026-04-14T10:00:00Z","agent":"","action":"x.y.z"}', "3:30: agent must be a non-empty string"),
    (b'{"ts":"2026-04-14T10:00:00Z","agent":"a","action":7}', "3:42: action must be a non-empty string"),
    (b'{"ts":"2026-04-14T10:00:00Z","agent":"a","action":"x.y.z","target":"prod"}',
     "3:59: target must be an object with system and env"),
    (b'{"ts":"2026-04-14T10:00:00Z","agent":"a","action":"x.y.z","target":{"env":1}}',
     "3:59: target.system and target.env must be strings"),
    (b'{"ts":"2026-04-14T10:00:00Z","agent":"a","action":"x.y.z","operation":5}', "3:59: operation must be a string"),
    (b'["not", "a", "record"]', "3:1: an activity record must be a JSON object, got list"),
])
def test_bad_records_name_the_file_line_and_column(tmp_path: Path, line: bytes, message: str) -> None:
    path = tmp_path / "bad.ndjson"
    path.write_bytes(LINES[0] + b"\n\n" + line + b"\n")
    with pytest.raises(InputError) as caught:
        read(path)
    assert str(caught.value) == f"{path}:{message}"


def test_a_truncated_gzip_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.ndjson.gz"
    path.write_bytes(gzip.compress(b"\n".join([LINES[0]] * 200))[:-40])
    with pytest.raises(InputError) as caught:
        read(path)
    assert str(caught.value).startswith(f"{path}:")
    assert "cannot read the activity stream" in str(caught.value)


def test_a_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        read(tmp_path / "nope.ndjson")
    assert str(caught.value) == f"{tmp_path / 'nope.ndjson'}: cannot read the activity file: No such file or directory"


def test_the_chain_decisions_are_activity(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    register(store, manifest())
    for ts, action in (("2026-04-14T10:00:00Z", "servicenow.change.read"),
                       ("2026-04-14T10:00:01Z", "aws.s3.put_object"),
                       ("2026-04-14T10:00:02Z", "servicenow.change.close")):
        decide_call(store, Call(ts=ts, agent="triage", action=action, payload={"k": "v"}, session="s"), record=True,
                    actor="gateway")
    decide_call(store, Call(ts="2026-04-14T10:00:03Z", agent="ghost", action="slack.chat.post"), record=True,
                actor="gateway")
    events = list(drift.iter_chain_decisions(store.conn))
    assert [(e.ts.second, e.agent, e.action, e.system, e.env, e.operation, e.where) for e in events] == [
        (0, "triage", "servicenow.change.read", "servicenow-prod", "prod", "read", "chain seq 2"),
        (1, "triage", "aws.s3.put_object", None, None, None, "chain seq 3"),
        (2, "triage", "servicenow.change.close", "servicenow-prod", "prod", "write", "chain seq 4"),
        (3, "ghost", "slack.chat.post", None, None, None, "chain seq 5"),
    ]
    result = drift.check(store, from_chain=True)
    assert [(a.agent, a.severity, [(f.kind, f.subject, f.severity, f.count) for f in a.findings])
            for a in result.agents] == [
        ("ghost", "critical", [("agent-unknown", "ghost", "critical", 1)]),
        ("triage", "high", [("undeclared-connector", "aws", "high", 1)]),
    ]
    since = drift.check(store, from_chain=True, since=datetime(2026, 4, 14, 10, 0, 2, tzinfo=UTC))
    assert (since.events, [a.agent for a in since.agents]) == (2, ["ghost"])
    store.close()


@pytest.mark.parametrize(("text", "expected"), [
    ("24h", datetime(2026, 4, 13, 10, 0, tzinfo=UTC)),
    ("7d", datetime(2026, 4, 7, 10, 0, tzinfo=UTC)),
    ("2026-04-01T00:00:00Z", datetime(2026, 4, 1, tzinfo=UTC)),
])
def test_since_takes_a_time_or_a_duration(text: str, expected: datetime) -> None:
    assert drift.parse_since(text, T0) == expected


def test_since_rejects_anything_else() -> None:
    with pytest.raises(InputError) as caught:
        drift.parse_since("last week", T0)
    assert str(caught.value) == "--since 'last week': use an RFC 3339 timestamp or a duration such as 24h or 7d"


def test_check_needs_exactly_one_source(tmp_path: Path) -> None:
    for kwargs in ({}, {"activity": tmp_path / "a", "from_chain": True}):
        with pytest.raises(InputError) as caught:
            drift.check(None, **kwargs)
        assert str(caught.value) == "give exactly one of --activity FILE or --from-chain"
    with pytest.raises(InputError) as caught:
        drift.check(None, from_chain=True)
    assert str(caught.value) == "--from-chain needs a state store with recorded decisions (none found)"


def test_a_chain_decision_covered_by_a_scoped_grant_is_not_drift(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    register(store, manifest())
    (store.directory / "config.yaml").write_text("groups: {leads: [priya]}\ngrants: {approvers: leads}\n")
    config = project.load(store.directory)
    grant = grants.request(store, agent="triage", actions=["servicenow.change.update"], scope={"change": "CHG1"},
                           ttl="15m", reason="fix", requested_by="triage", catalog=builtin(), at=T0)
    grants.approve(store, grant.id, actor="priya", config=config, at=T0)
    for minute, change in ((1, "CHG1"), (2, "CHG2")):
        decide_call(store, Call(ts=f"2026-04-14T10:0{minute}:00Z", agent="triage", action="servicenow.change.update",
                                payload={"change": change}), record=True, actor="gateway")
    result = drift.check(store, from_chain=True)
    assert [(f.kind, f.subject, f.count, f.first_at) for a in result.agents for f in a.findings] == [
        ("undeclared-action", "servicenow.change.update", 1, "chain seq 5")]
    store.close()


def test_per_day_rates_count_utc_calendar_days_whatever_the_offset(tmp_path: Path) -> None:
    path = tmp_path / "days.ndjson"
    stamps = ["2026-04-15T01:00:00+02:00", "2026-04-14T20:00:00-03:00", "2026-04-14T12:00:00Z"]
    path.write_bytes(b"".join(
        b'{"ts":"%s","agent":"triage","action":"servicenow.change.read"}\n' % s.encode() for s in stamps))
    events = read(path)
    assert [e.ts.isoformat() for e in events] == [
        "2026-04-14T23:00:00+00:00", "2026-04-14T23:00:00+00:00", "2026-04-14T12:00:00+00:00"]
    store = Store(tmp_path / "state")
    register(store, manifest(rate={"perDay": 2}))
    result = drift.check(store, activity=path)
    assert [(f.kind, f.subject, f.severity, f.detail) for a in result.agents for f in a.findings] == [
        ("rate-exceeded", "perDay", "low", "peak 3 calls on 2026-04-14, declared 2/day (1.5x)")]
    store.close()
