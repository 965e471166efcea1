"""Concurrent CLI processes and kill -9 never corrupt the state or fork the chain."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES

TEMPLATE = (EXAMPLES / "manifests" / "triage-cs-01.yaml").read_text()


def _write_agents(folder: Path, prefix: str, count: int, variant: str = "") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        text = TEMPLATE.replace("name: triage-cs-01", f"name: {prefix}-{i:03d}")
        if variant:
            text = text.replace("team: secops}", f"team: secops, rev: {variant}}}", 1)
        (folder / f"{prefix}-{i:03d}.yaml").write_text(text)


def _arxctl(*args: str, state: Path) -> subprocess.Popen:
    env = {**os.environ, "ARX_HOME": str(state), "ARX_ACTOR": "proc"}
    return subprocess.Popen(
        [sys.executable, "-m", "arxctl", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _verify(state: Path) -> dict:
    p = _arxctl("chain", "verify", "--format", "json", state=state)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, (out, err)
    return json.loads(out)


def _consistency(state: Path) -> tuple[int, int]:
    """Every stored Agent version has exactly one chain record, and every head points at a stored version."""
    conn = sqlite3.connect(state / "state.db")
    try:
        versions = conn.execute("SELECT COUNT(*) FROM resources WHERE kind = 'Agent'").fetchone()[0]
        records = conn.execute(
            "SELECT COUNT(*) FROM chain WHERE type IN ('agent.registered', 'agent.version')"
        ).fetchone()[0]
        dangling = conn.execute(
            "SELECT COUNT(*) FROM heads h LEFT JOIN resources r "
            "ON r.kind = h.kind AND r.name = h.name AND r.version = h.version WHERE r.name IS NULL"
        ).fetchone()[0]
        assert dangling == 0
        return versions, records
    finally:
        conn.close()


def test_four_processes_register_at_once(tmp_path: Path) -> None:
    state = tmp_path / "state"
    folders = []
    for p in range(4):
        folder = tmp_path / f"batch{p}"
        _write_agents(folder, f"agent-p{p}", 25)
        _write_agents(folder, "shared", 5, variant=f"p{p}")  # the same five agents, different content per process
        folders.append(folder)
    procs = [_arxctl("register", str(f), state=state) for f in folders]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    result = _verify(state)
    assert result["ok"] and result["no_gaps"]
    # 100 distinct agents + 5 shared agents registered 4 times with different content = 4 versions each.
    assert result["records"] == 100 + 5 * 4
    assert _consistency(state) == (120, 120)


@pytest.mark.slow
def test_kill_minus_nine_during_register_keeps_state_consistent(tmp_path: Path) -> None:
    state = tmp_path / "state"
    rng = random.Random(7)
    killed = 0
    for round_ in range(12):
        folder = tmp_path / f"round{round_}"
        _write_agents(folder, "crash", 60, variant=f"r{round_}")
        p = _arxctl("register", str(folder), state=state)
        time.sleep(rng.uniform(0.05, 0.9))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            killed += 1
        p.communicate(timeout=120)
        if not (state / "state.db").exists():
            continue  # killed before the database was created: nothing to check yet
        result = _verify(state)
        assert result["ok"], result["problems"]
        versions, records = _consistency(state)
        assert versions == records
        # All 60 agents of a round are stored together or not at all.
        assert versions % 60 == 0
    assert killed >= 3, "the loop must actually interrupt some registrations"
