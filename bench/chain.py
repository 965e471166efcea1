"""Audit-chain throughput: batched append, export, and streamed verify of a 1,000,000-record export.

Prints records/s and ratios against anchors measured in the same run: SHA-256 once per line over the same
lines in memory, and the same over the export streamed from disk (gunzip + split + SHA-256).
Usage: python bench/chain.py [--records N] [--batch N]
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
import time
from hashlib import sha256
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arxctl.chain import checkpoints, keys  # noqa: E402
from arxctl.chain import store as chain  # noqa: E402
from arxctl.chain.export import export  # noqa: E402
from arxctl.chain.witness import FileWitness  # noqa: E402
from arxctl.store.sqlite import Store  # noqa: E402

VERIFY_CHILD = """
import re, sys, time
from arxctl.chain import verify_chain
start = time.perf_counter()
result = verify_chain(witness=sys.argv[1], export=sys.argv[2], public_keys=sys.argv[3])
elapsed = time.perf_counter() - start
assert result.ok, result.problems[:5]
hwm = re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)
print(result.records, elapsed, hwm)
"""
IMPORT_CHILD = """
import re
from arxctl.chain import verify_chain
print(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
"""


def decision(i: int) -> chain.Entry:
    """A decision record shaped like formats.md section 6."""
    return chain.Entry(
        type="decision", agent=f"agent-{i % 50:02d}", actor="gateway",
        body={
            "decision_id": f"d-{i:09d}", "ts": "2026-04-14T10:00:00Z", "agent": f"agent-{i % 50:02d}",
            "session": f"s-{i // 20:07d}", "action": "servicenow.change.close", "verdict": "ALLOW",
            "reason": "threshold", "score": {"operation": 20, "connector": 16, "frequency": i % 15, "target": 20,
                                             "total": 56 + i % 15},
            "thresholds": {"review": 60, "deny": 80}, "rules": [],
            "policy_revision": "sha256:" + sha256(b"policy").hexdigest(),
            "payload_digest": "sha256:" + sha256(i.to_bytes(8, "big")).hexdigest(),
        },
        ts=f"2026-04-14T{10 + i // 3_600_000 % 10:02d}:{i // 60_000 % 60:02d}:{i // 1000 % 60:02d}Z",
    )


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="arx-bench-chain-"))
    store = Store(work / "state")
    with store.transaction() as conn:
        keys.generate(conn, store.directory, key_id="bench")
    signer = keys.signer(store.conn, store.directory)
    witness = FileWitness(work / "witness")

    append_s = 0.0
    for first in range(0, args.records, args.batch):
        batch = [decision(i) for i in range(first, min(args.records, first + args.batch))]
        start = time.perf_counter()
        with store.transaction() as conn:
            chain.append_many(conn, batch)
        append_s += time.perf_counter() - start
        if first % (args.records // 4) < args.batch:
            checkpoints.publish(store, witness, signer)
    checkpoints.publish(store, witness, signer)
    keyring = work / "keys.json"
    import orjson

    keyring.write_bytes(orjson.dumps(keys.export_public(store.conn)))

    start = time.perf_counter()
    out = work / "audit.ndjson.gz"
    export(store, out, signer)
    export_s = time.perf_counter() - start
    store.close()

    lines = gzip.decompress(out.read_bytes()).split(b"\n")
    raw_bytes = sum(len(x) for x in lines)
    start = time.perf_counter()
    for line in lines:
        sha256(line).digest()
    hash_s = time.perf_counter() - start
    del lines

    start = time.perf_counter()
    with gzip.open(out, "rb") as handle:
        while block := handle.read(1 << 22):
            for line in block.split(b"\n"):
                sha256(line).digest()
    stream_s = time.perf_counter() - start

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.run([sys.executable, "-c", VERIFY_CHILD, witness.uri, str(out), str(keyring)],
                           capture_output=True, text=True, env=env, check=True, timeout=1800)
    records, verify_s, peak_kb = child.stdout.split()
    verify_s = float(verify_s)
    base_kb = subprocess.run([sys.executable, "-c", IMPORT_CHILD], capture_output=True, text=True, env=env,
                             check=True, timeout=120).stdout.strip()

    n = args.records
    size_mb = out.stat().st_size / 1e6
    print(f"records                     {n:,} ({raw_bytes / n:.0f} bytes/line, export {size_mb:.1f} MB gz)")
    print(f"batched append              {rate(n, append_s)}  (target >= 50,000/s; batches of {args.batch:,})")
    print(f"export (complete)           {rate(n, export_s)}")
    print(f"anchor: SHA-256 per line    {rate(n, hash_s)}  (lines already in memory)")
    print(f"anchor: gunzip + SHA-256    {rate(n, stream_s)}  (the export streamed from disk)")
    print(f"verify_chain                {rate(int(records), verify_s)}  (target >= 500,000/s)")
    print(f"  ratio vs in-memory SHA-256   {hash_s / verify_s:.2f}  (target >= 0.5)")
    print(f"  ratio vs streamed SHA-256    {stream_s / verify_s:.2f}")
    print(f"  peak RSS                     {int(peak_kb) / 1024:.0f} MB (interpreter + imports alone: "
          f"{int(base_kb) / 1024:.0f} MB)")


if __name__ == "__main__":
    main()
