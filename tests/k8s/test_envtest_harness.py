"""The envtest harness's choices: which binaries it uses, and when a missing toolchain skips or fails."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from tests.envtest.cluster import BUILD_SCRIPT, ClusterFailed, ToolchainMissing, in_ci, locate_assets


def _fake_assets(folder: Path, names: tuple[str, ...] = ("kube-apiserver", "etcd")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        binary = folder / name
        binary.write_text("#!/bin/sh\nexit 0\n")
        binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    return folder


def _script(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "build.sh"
    script.write_text(f"#!/usr/bin/env bash\n{body}\n")
    return script


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("TRUE", True), ("1", True), ("", False),
                                                 ("false", False), (None, False)])
def test_ci_detection(monkeypatch: pytest.MonkeyPatch, value: str | None, expected: bool) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert in_ci() is expected


def test_kubebuilder_assets_is_used_without_building(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assets = _fake_assets(tmp_path / "assets")
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets))
    assert locate_assets(_script(tmp_path, "exit 1")) == assets


def test_build_script_honours_kubebuilder_assets(tmp_path: Path) -> None:
    assets = _fake_assets(tmp_path / "assets")
    done = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=30, check=False,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KUBEBUILDER_ASSETS": str(assets)})
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{assets}\n", f"using KUBEBUILDER_ASSETS={assets}\n")


def test_incomplete_kubebuilder_assets_fall_back_to_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(_fake_assets(tmp_path / "partial", ("kube-apiserver",))))
    built = _fake_assets(tmp_path / "built")
    assert locate_assets(_script(tmp_path, f"echo building >&2; echo {built}")) == built


def test_no_go_is_a_missing_toolchain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    script = _script(tmp_path, "echo 'error: Go is not installed' >&2; exit 2")
    with pytest.raises(ToolchainMissing) as caught:
        locate_assets(script)
    assert str(caught.value) == (
        f"error: Go is not installed (set KUBEBUILDER_ASSETS, or install Go and run {script})")


def test_a_failed_build_is_a_failure_with_its_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    script = _script(tmp_path, "echo 'go: module lookup disabled' >&2; exit 1")
    with pytest.raises(ClusterFailed) as caught:
        locate_assets(script)
    assert str(caught.value) == f"{script} failed (exit 1):\ngo: module lookup disabled"


def test_a_build_that_reports_no_binaries_is_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    script = _script(tmp_path, f"echo {tmp_path}")
    with pytest.raises(ClusterFailed) as caught:
        locate_assets(script)
    assert str(caught.value) == f"{script} reported {tmp_path}, which lacks kube-apiserver or etcd"


def test_a_build_past_its_deadline_is_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    script = _script(tmp_path, "exec sleep 30")
    with pytest.raises(ClusterFailed) as caught:
        locate_assets(script, deadline_s=0.5)
    assert str(caught.value) == f"{script} did not finish within 0.5 s"
