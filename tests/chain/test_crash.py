"""kill -9 between append and publish, in a loop: no acknowledged record is lost and the chain verifies."""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from arxctl.chain import store as chain
from arxctl.chain import verify_store
from arxctl.chain.keys import generate
from arxctl.store.sqlite import Store

CHILD = """
import sys
from pathlib import Path
from arxctl.chain import checkpoints, keys, store as chain
from arxctl.chain.witness import FileWitness
from arxctl.store.sqlite import Store

store = Store(Path(sys.argv[1]))
witness = FileWitness(Path(sys.argv[2]))
signer = keys.signer(store.conn, store.directory)
i = 0
while True:
    i += 1
    with store.transaction() as conn:
        entry = chain.Entry("decision", "agent-" + str(i % 3), "gw", {"i": i})
        records = chain.append_many(conn, [entry] * (1 + i % 4))
    print("acked", records[-1].seq, flush=True)
    checkpoints.publish(store, witness, signer)
"""


def acked_until_killed(state: Path, witness: Path, acks: int, deadline: float) -> list[int]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(state), str(witness)], stdout=subprocess.PIPE,
                            env=env)
    seen: list[int] = []
    buffer = b""
    assert proc.stdout is not None
    try:
        while len(seen) < acks:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "the child did not acknowledge appends before the deadline"
            ready, _, _ = select.select([proc.stdout], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            assert chunk, f"the child exited early with {proc.wait(timeout=10)}"
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            seen.extend(int(line.split()[1]) for line in lines if line.startswith(b"acked "))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    return seen


@pytest.mark.slow
def test_kill_nine_in_a_loop_loses_nothing_acknowledged(tmp_path: Path) -> None:
    state, witness = tmp_path / "state", tmp_path / "witness"
    with Store(state) as store, store.transaction() as conn:
        generate(conn, store.directory, key_id="crash-key")
    rng = random.Random(20260414)
    acknowledged: list[int] = []
    for _ in range(8):
        acknowledged += acked_until_killed(state, witness, rng.randint(1, 25), time.monotonic() + 120)
        with Store(state) as store:
            present = {seq for seq, _ in chain.iter_seq_lines(store.conn)}
            assert set(acknowledged) <= present
            local = verify_store(store)
            assert (local.ok, local.no_gaps, local.signatures_valid) == (True, True, True), local.problems
            witnessed = verify_store(store, witness=witness.as_uri())
            assert [p.kind for p in witnessed.problems] == []
            assert witnessed.tip_matches_witness is (witnessed.checkpoints > 0)
    assert len(acknowledged) >= 8
