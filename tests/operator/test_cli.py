"""`arxctl operator run` refuses bad options before touching a cluster."""

from __future__ import annotations

import pytest

from tests.conftest import Cli


@pytest.mark.parametrize(("args", "message"), [
    ((), "error: pass --namespace N (one or more) or --all-namespaces\n"),
    (("-n", "a", "--all-namespaces"), "error: pass --namespace N (one or more) or --all-namespaces\n"),
    (("-A", "--publish-every", "soon"),
     "error: invalid duration 'soon': use a number and a unit, e.g. 30s, 15m, 4h, 1h30m, 7d\n"),
    (("-A", "--resync", "0s"), "error: invalid duration '0s': must be greater than zero\n"),
])
def test_operator_run_rejects_bad_options(cli: Cli, args: tuple[str, ...], message: str) -> None:
    result = cli("operator", "run", *args)
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", message)



@pytest.mark.parametrize(("namespace", "expected"), [
    ("arx-e2e-1f2e", True), ("payments", True), ("kube-system", False), ("team-a", True), ("team-a-pr-7", False),
    ("team-a-pr-123", True), ("other-pr-123", False),
])
def test_namespace_patterns_match_as_kopf_documents_them(namespace: str, expected: bool) -> None:
    from kopf._cogs.structs.references import match_namespace

    from arxctl.operator.handlers import namespace_filter

    patterns = ["arx-e2e-*", "payments", "team-*, !*-pr-*, *pr-123"]
    watched = namespace_filter(patterns)
    assert watched is not None and watched(namespace) is expected
    assert any(match_namespace(namespace, p) for p in patterns) is expected  # type: ignore[arg-type]
    assert namespace_filter(["payments", "billing"]) is None
