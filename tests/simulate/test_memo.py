"""What the replay's memo may abstract: which `session.count` comparisons and which payload reads it can see through."""

from __future__ import annotations

import pytest

from arxctl.policy import simulate as S


@pytest.mark.parametrize(("sources", "expected"), [
    ([], ()),
    (["session.count > 20"], (20,)),
    (["session.count >= 4 && session.count < 9"], (3, 8)),
    (["session.count == 7"], (6, 7)),
    (["session.count != 7 || session.count <= 2"], (2, 6, 7)),
    (['operation == "containment" && session.count > 3', "session.count > 30"], (3, 30)),
    (["(session.count > 3) ? true : session.count < 1"], (0, 3)),
    (['session.id == "s-1"'], ()),
])
def test_count_boundaries(sources: list[str], expected: tuple[int, ...]) -> None:
    assert S.count_boundaries(sources) == expected


@pytest.mark.parametrize("source", [
    "session.count % 2 == 0",
    "session.count * 2 > 7",
    "1 + session.count > 7",
    "session.count > 3 * 2",
    "session.count > 3.5",
    "session.count > -1",
    "3 < session.count",
    "session.count > 3 == true",
    "int(session.count) > 3 || session.count",
    "has(session.count)",
])
def test_count_boundaries_refuse_any_other_use(source: str) -> None:
    assert S.count_boundaries(["session.count > 1", source]) is None


@pytest.mark.parametrize(("source", "expected"), [
    ("size(payload.change_ids) > 1", True),
    ("has(payload.change_ids) && size( payload . change_ids ) >= 2", True),
    ("size(payload.other) > 1", True),
    ('payload.change_ids[0] == "C1"', False),
    ("size(payload.change_ids) > 1 && payload.change_ids.exists(x, x == 'C9')", False),
    ("payload.change_ids == []", False),
    ("mysize(payload.change_ids) > 1", False),
    ("x.size(payload.change_ids) > 1", False),
    ("size(payload.change_ids.items) > 1", False),
    ('"size(payload.change_ids)" == payload.change_ids', False),
])
def test_size_only(source: str, expected: bool) -> None:
    assert S.size_only([source], "change_ids") is expected
    assert S.size_only(["size(payload.change_ids) > 1", source], "change_ids") is expected
