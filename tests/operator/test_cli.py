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

