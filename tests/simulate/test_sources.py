"""Reading activity: gzip and plain, folders, standard input, malformed lines, --strict, damaged gzip."""

from __future__ import annotations

import gzip
import io
import sys
from pathlib import Path

import orjson
import pytest

from arxctl.errors import InputError
from arxctl.policy import simulate as S

from .conftest import ACTIVITY, make_spec, run


def _without_sources(report: dict) -> bytes:
    report = dict(report)
    report["input"] = {k: v for k, v in report["input"].items() if k != "sources"}
    report["examples"] = [{k: v for k, v in e.items() if k != "location"} for e in report["examples"]]
    return orjson.dumps(report)


def test_gzip_and_plain_give_the_same_report(tmp_path: Path) -> None:
    packed = tmp_path / "activity.ndjson.gz"
    packed.write_bytes(gzip.compress(ACTIVITY.read_bytes()))
    spec = make_spec()
    assert _without_sources(run(spec, packed)) == _without_sources(run(spec, ACTIVITY))


def test_concatenated_gzip_members_and_small_reads(tmp_path: Path) -> None:
    lines = ACTIVITY.read_bytes().splitlines(keepends=True)
    packed = tmp_path / "two.ndjson.gz"
    packed.write_bytes(gzip.compress(b"".join(lines[:10])) + gzip.compress(b"".join(lines[10:])))
    chunks = list(S.read_chunks(S.Source(str(packed), packed), 0, read_size=64))
    assert [line for c in chunks for line in c.lines] == [line.rstrip(b"\n") for line in lines]
    assert [c.first for c in chunks] == sorted({c.first for c in chunks})
    spec = make_spec()
    assert _without_sources(run(spec, packed)) == _without_sources(run(spec, ACTIVITY))


def test_a_folder_is_read_in_path_order(tmp_path: Path) -> None:
    lines = ACTIVITY.read_bytes().splitlines(keepends=True)
    (tmp_path / "b").mkdir()
    (tmp_path / "a-day1.ndjson").write_bytes(b"".join(lines[:27]))
    (tmp_path / "b" / "day2.ndjson.gz").write_bytes(gzip.compress(b"".join(lines[27:])))
    (tmp_path / "notes.txt").write_text("not activity")
    sources = S.activity_sources([str(tmp_path)])
    assert [s.display for s in sources] == [str(tmp_path / "a-day1.ndjson"), str(tmp_path / "b" / "day2.ndjson.gz")]
    spec = make_spec()
    assert _without_sources(run(spec, tmp_path)) == _without_sources(run(spec, ACTIVITY))


def test_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    data = gzip.compress(ACTIVITY.read_bytes())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    report = S.replay(make_spec(), S.activity_sources(["-"]))
    assert report["input"]["sources"] == ["<stdin>"]
    assert report["events"] == 29


def test_missing_inputs_are_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        S.activity_sources([str(tmp_path / "nope.ndjson")])
    with pytest.raises(InputError, match="no activity files"):
        S.activity_sources([str(tmp_path)])
    with pytest.raises(InputError, match="once"):
        S.activity_sources(["-", "-"])


BAD_LINES = [
    (b'{"ts":"2026-04-14T10:09:00Z","agent":"ops-bot","action":', "not a JSON object: Input data was truncated"),
    (b'["not", "an", "object"]', "Expected `object`, got `array`"),
    (b'{"ts":"yesterday","agent":"ops-bot","action":"slack.chat.post"}',
     "Invalid RFC3339 encoded datetime - at `$.ts`"),
    (b'{"ts":"2026-04-14T10:09:00Z","agent":7,"action":"slack.chat.post"}', "Expected `str`, got `int` - at `$.agent`"),
    (b'{"ts":"2026-04-14T10:09:00Z","action":"slack.chat.post"}', "Object missing required field `agent`"),
    (b'{"ts":"2026-04-14T10:09:00Z","agent":"ops-bot","action":"slack.chat.post","target":"prod"}',
     "Expected `object | null`, got `str` - at `$.target`"),
    (b'{"ts":"2026-04-14T10:09:00Z","agent":"ops-bot","action":"slack.chat.post","payload":{"t":"\xff"}}',
     "the line is not valid UTF-8"),
]


@pytest.mark.parametrize(("bad", "message"), BAD_LINES)
def test_a_malformed_line_is_reported_with_its_number_and_the_replay_goes_on(
    tmp_path: Path, bad: bytes, message: str
) -> None:
    lines = ACTIVITY.read_bytes().splitlines()
    path = tmp_path / "a.ndjson"
    path.write_bytes(b"\n".join([*lines[:5], bad, b"", *lines[5:]]) + b"\n")
    report = run(make_spec(), path)
    assert report["malformed"] == {"count": 1, "lines": [f"{path}:6: {message}"]}
    assert report["events"] == 29
    assert report["input"]["lines"] == 31
    with pytest.raises(S.StrictError) as caught:
        run(make_spec(strict=True), path)
    assert str(caught.value) == f"{path}:6: {message} (--strict)"
    assert caught.value.exit_code == 2


def test_payloads_that_are_not_objects_are_decided_not_dropped(tmp_path: Path) -> None:
    path = tmp_path / "a.ndjson"
    path.write_bytes(b'{"ts":"2026-04-14T10:00:00Z","agent":"ops-bot","action":"slack.chat.post","payload":[1]}\n'
                     b'{"ts":"2026-04-14T10:01:00Z","agent":"ops-bot","action":"slack.chat.post","payload":null}\n')
    report = run(make_spec(), path)
    assert report["by_reason"]["proposed"] == {"policy-error": 1, "threshold": 1}
    assert report["proposed"] == {"ALLOW": 1, "APPROVAL_REQUIRED": 0, "DENY": 1}


def test_a_truncated_gzip_is_bad_input(tmp_path: Path) -> None:
    data = gzip.compress(ACTIVITY.read_bytes() * 50)
    path = tmp_path / "cut.ndjson.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="gzip stream is truncated"):
        run(make_spec(), path)
    path.write_bytes(data[:10] + b"\x00" * 50)
    with pytest.raises(InputError, match="not a valid gzip stream"):
        run(make_spec(), path)
