"""Shared fixtures: an isolated state directory, a CLI runner and the repository's example paths; the session's
kube-apiserver fixtures (`cluster`, `api_client`, `installed_crds`) come from the tests.cluster plugin."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from arxctl.cli import app

pytest_plugins = ["tests.cluster"]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh state directory used by every command through ARX_HOME."""
    state = tmp_path / "state"
    monkeypatch.setenv("ARX_HOME", str(state))
    monkeypatch.setenv("ARX_ACTOR", "tester")
    monkeypatch.delenv("ARX_NOW", raising=False)
    return state


class Cli:
    """Runs arxctl in-process and returns (exit code, stdout, stderr)."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None, env: dict[str, str] | None = None):
        result = self.runner.invoke(app, list(args), input=input, env=env, catch_exceptions=False)
        return result


@pytest.fixture
def cli(state_dir: Path) -> Iterator[Cli]:
    old = os.getcwd()
    os.chdir(state_dir.parent)
    try:
        yield Cli()
    finally:
        os.chdir(old)
