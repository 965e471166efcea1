"""Golden diagnostics: each broken file yields exactly the expected `path:line:col: RULE` lines."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from arxctl.cli import app
from arxctl.resources.validation import INPUT_RULES, check_paths

GOLDEN = Path(__file__).parent / "golden" / "validate"
CASES = sorted(p.name for p in GOLDEN.glob("*.yaml"))


def test_there_are_enough_golden_cases() -> None:
    assert len(CASES) >= 15


@pytest.mark.parametrize("name", CASES)
def test_golden_diagnostics(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(GOLDEN)
    expected = (GOLDEN / name).with_suffix(".expected").read_text().splitlines()
    report = check_paths([Path(name)])
    assert [d.render() for d in report.diagnostics] == expected
    assert expected, "every golden file is broken on purpose"


@pytest.mark.parametrize("name", CASES)
def test_golden_exit_codes(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(GOLDEN)
    monkeypatch.setenv("ARX_HOME", str(tmp_path / "state"))
    expected = (GOLDEN / name).with_suffix(".expected").read_text().splitlines()
    rules = {line.split(": ")[1].split()[0] for line in expected}
    result = CliRunner().invoke(app, ["validate", name])
    assert result.exit_code == (2 if rules & INPUT_RULES else 1)
    assert not (tmp_path / "state").exists(), "validate never creates state"
