"""Invariants: any altered byte of a bundle file fails verify; a span hash changes with any edit inside it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arxctl.analyze import evidence
from arxctl.analyze.model import span_sha256, span_text
from arxctl.analyze.session import run
from tests.conftest import EXAMPLES


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("prop")
    shutil.copytree(EXAMPLES / "agents/triage", root / "triage")
    shutil.copy(EXAMPLES / "manifests/triage-cs-01.yaml", root / "m.yaml")
    report = run([root / "triage"], manifest_file=root / "m.yaml", state=root / "no-state", workers=1)
    evidence.write(report, root / "bundle", state_dir=None)
    assert evidence.verify(root / "bundle").ok
    return root / "bundle"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_altered_byte_fails_verify(bundle: Path, tmp_path_factory: pytest.TempPathFactory, data) -> None:
    copy = tmp_path_factory.mktemp("tamper") / "b"
    shutil.copytree(bundle, copy)
    name = data.draw(st.sampled_from(sorted(p.name for p in copy.iterdir())))
    raw = bytearray((copy / name).read_bytes())
    at = data.draw(st.integers(0, len(raw) - 1))
    raw[at] = (raw[at] + data.draw(st.integers(1, 255))) % 256
    (copy / name).write_bytes(bytes(raw))
    try:
        result = evidence.verify(copy)
    except Exception as exc:  # a manifest.json no longer parseable is bad input: also a failed verification
        assert name == "manifest.json" and type(exc).__name__ == "InputError"
        return
    assert not result.ok


@given(st.text(alphabet="ab\n(x)é", min_size=1, max_size=60), st.data())
def test_span_hash_changes_with_any_edit_inside(source: str, data) -> None:
    lines = source.splitlines(keepends=True)
    line = data.draw(st.integers(1, len(lines)))
    width = len(lines[line - 1].rstrip("\n"))
    if width == 0:
        return
    start = data.draw(st.integers(1, width))
    end = data.draw(st.integers(start + 1, width + 1))
    spot = data.draw(st.integers(start, end - 1))
    offset = sum(len(x) for x in lines[: line - 1]) + spot - 1
    edited = source[:offset] + ("Z" if source[offset] != "Z" else "Y") + source[offset + 1:]
    assert span_text(source, line, start, line, end) == lines[line - 1][start - 1:end - 1]
    assert span_sha256(edited, line, start, line, end) != span_sha256(source, line, start, line, end)
