"""Audit-chain throughput: batched append, export, and streamed verify of a 1,000,000-record export.

Prints records/s and ratios against anchors measured in the same run: SHA-256 once per line over the same
lines in memory, and the same over the export streamed from disk (gunzip + split + SHA-256). Verify runs in a
fresh process per worker count, so its peak RSS is its own. `--workers 1` checks everything on one thread;
more workers are threads running the C scan (processes when only the Python scan is available) while the
main thread inflates. Also times `verify_store` (the local SQLite store, no export).
Usage: python bench/chain.py [--records N] [--batch N] [--workers 1,2] [--keep]
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
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
import re, resource, sys, time
from arxctl.chain import verify_chain
from arxctl.chain.verify import scan_backend
start = time.perf_counter()
result = verify_chain(witness=sys.argv[1], export=sys.argv[2], public_keys=sys.argv[3], workers=int(sys.argv[4]))
elapsed = time.perf_counter() - start
assert result.ok, result.problems[:5]
hwm = re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)
print(result.records, elapsed, hwm, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, scan_backend())
"""
STORE_CHILD = """
import sys, time
from pathlib import Path
from arxctl.chain.verify import verify_store
from arxctl.store.sqlite import Store
store = Store(Path(sys.argv[1]))
start = time.perf_counter()
result = verify_store(store)
elapsed = time.perf_counter() - start
assert result.ok, result.problems[:5]
print(result.records, elapsed)
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
    parser.add_argument("--workers", default="1,2", help="Worker counts to verify with, comma-separated.")
    parser.add_argument("--keep", action="store_true", help="Keep the work directory (printed) for re-runs.")
    args = parser.parse_args()
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="arx-bench-chain-"))
    try:
        run(args, work, load_before)
    finally:
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path, load_before: tuple[float, float, float]) -> None:
    """Append, export, measure the anchors and verify in `work`, then print every figure."""
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
    verifies = []
    for workers in (int(w) for w in args.workers.split(",")):
        child = subprocess.run([sys.executable, "-c", VERIFY_CHILD, witness.uri, str(out), str(keyring), str(workers)],
                               capture_output=True, text=True, env=env, check=True, timeout=1800)
        records, verify_s, peak_kb, workers_kb, backend = child.stdout.split()
        verifies.append((workers, int(records), float(verify_s), int(peak_kb), int(workers_kb), backend))
    child = subprocess.run([sys.executable, "-c", STORE_CHILD, str(work / "state")], capture_output=True, text=True,
                           env=env, check=True, timeout=1800)
    store_records, store_s = child.stdout.split()
    base_kb = subprocess.run([sys.executable, "-c", IMPORT_CHILD], capture_output=True, text=True, env=env,
                             check=True, timeout=120).stdout.strip()

    n = args.records
    size_mb = out.stat().st_size / 1e6
    print(f"load average                {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after "
          f"({os.cpu_count()} CPUs)")
    print(f"records                     {n:,} ({raw_bytes / n:.0f} bytes/line, export {size_mb:.1f} MB gz)")
    print(f"batched append              {rate(n, append_s)}  (target >= 50,000/s; batches of {args.batch:,})")
    print(f"export (complete)           {rate(n, export_s)}")
    print(f"anchor: SHA-256 per line    {rate(n, hash_s)}  (lines already in memory)")
    print(f"anchor: gunzip + SHA-256    {rate(n, stream_s)}  (the export streamed from disk)")
    for workers, records, verify_s, peak_kb, workers_kb, backend in verifies:
        label = "1 thread" if workers == 1 else f"{workers} workers"
        print(f"verify_chain, {label:13s} {rate(records, verify_s)}  (target >= 500,000/s; scan: {backend})")
        print(f"  ratio vs in-memory SHA-256   {hash_s / verify_s:.2f}  (target >= 0.5)")
        print(f"  ratio vs streamed SHA-256    {stream_s / verify_s:.2f}")
        each = f"each worker process: {workers_kb / 1024:.0f} MB; " if workers_kb else ""
        print(f"  peak RSS                     {peak_kb / 1024:.0f} MB ({each}interpreter + imports alone: "
              f"{int(base_kb) / 1024:.0f} MB)")
    print(f"verify_store (local SQLite)  {rate(int(store_records), float(store_s))}")


if __name__ == "__main__":
    main()
