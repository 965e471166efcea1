"""A git-free copy of the sample agents and manifests, so positions and coverage are the same everywhere."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """tmp_path with agents/<name>/ and manifests/*.yaml copied from examples/ (tmp_path is the CLI's cwd)."""
    shutil.copytree(EXAMPLES / "agents", tmp_path / "agents")
    shutil.copytree(EXAMPLES / "manifests", tmp_path / "manifests")
    shutil.copytree(EXAMPLES / "policies", tmp_path / "policies")
    return tmp_path
