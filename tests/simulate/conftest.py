"""Fixtures for simulate: the hand-computed fleet, its policies and activity, and spec builders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from arxctl.policy import simulate as S
from arxctl.policy.catalog import builtin
from arxctl.resources.yamlio import iter_documents

FIXTURES = Path(__file__).parent / "fixtures"
ACTIVITY = FIXTURES / "activity.ndjson"
MANIFESTS = FIXTURES / "manifests"
BASELINE = FIXTURES / "baseline"
PROPOSED = FIXTURES / "proposed"


def resources(*paths: Path, kind: str) -> tuple[dict[str, Any], ...]:
    return tuple(d.data for _, docs, _ in iter_documents(list(paths)) for d in docs if d.data["kind"] == kind)


def make_spec(baseline: Path | None = BASELINE, proposed: Path = PROPOSED, **kw: Any) -> S.ReplaySpec:
    """A spec over the fixture agents; `baseline=None` compares with the recorded verdicts."""
    base = (S.PolicySource("recorded", None) if baseline is None
            else S.PolicySource(str(baseline), resources(baseline, kind="Policy")))
    return S.ReplaySpec(
        baseline=base, proposed=S.PolicySource(str(proposed), resources(proposed, kind="Policy")),
        agents=S.manifest_snapshots(resources(MANIFESTS, kind="Agent")), catalog=builtin(), **kw,
    )


def run(spec: S.ReplaySpec, *paths: Path | str, workers: int = 1) -> dict[str, Any]:
    return S.replay(spec, S.activity_sources([str(p) for p in paths]), workers=workers)


@pytest.fixture
def spec() -> S.ReplaySpec:
    return make_spec()
