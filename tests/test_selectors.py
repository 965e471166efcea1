from __future__ import annotations

import pytest

from arxctl.errors import InputError
from arxctl.registry.selectors import Requirement, matches, parse_selector


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("env=prod", [Requirement("env", "=", "prod")]),
        ("env==prod,region=us-east", [Requirement("env", "=", "prod"), Requirement("region", "=", "us-east")]),
        ("env!=dev", [Requirement("env", "!=", "dev")]),
        ("team,!legacy", [Requirement("team", "exists"), Requirement("legacy", "!exists")]),
        ("env:prod/region:us-east", [Requirement("env", "=", "prod"), Requirement("region", "=", "us-east")]),
        ("example.com/team:secops/env:prod",
         [Requirement("example.com/team", "=", "secops"), Requirement("env", "=", "prod")]),
    ],
)
def test_parse(text: str, expected: list[Requirement]) -> None:
    assert parse_selector(text) == expected


@pytest.mark.parametrize("text", ["env=prod,,x=y", "=prod", "env:prod/dangling"])
def test_bad_selectors(text: str) -> None:
    with pytest.raises(InputError):
        parse_selector(text)


def test_matching() -> None:
    labels = {"env": "prod", "team": "secops"}
    assert matches(parse_selector("env=prod,team"), labels)
    assert not matches(parse_selector("env=prod,region=us-east"), labels)
    assert matches(parse_selector("region!=us-east"), labels)
    assert matches([], None)
