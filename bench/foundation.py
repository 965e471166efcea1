"""Foundation benchmarks: `arxctl --help` wall time, validate throughput, chain append rates.

Each figure is printed beside an anchor measured in the same run:
- `--help` against `python -c pass` (the interpreter's own start-up);
- validate against parsing the same files with libyaml alone (no schema, no semantics);
- chain append against raw SQLite inserts of rows of the same size in one transaction.

Run: .venv/bin/python bench/foundation.py [--files 1000] [--records 100000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arxctl.chain import store as chain  # noqa: E402
from arxctl.resources.validation import check_paths  # noqa: E402
from arxctl.resources.yamlio import read_file  # noqa: E402
from arxctl.store.sqlite import Store  # noqa: E402

EXAMPLES = ROOT / "examples" / "manifests"


def wall(cmd: list[str], runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_help() -> None:
    exe = shutil.which("arxctl", path=str(Path(sys.executable).parent)) or "arxctl"
    help_s = wall([exe, "--help"])
    python_s = wall([sys.executable, "-c", "pass"])
    print(f"arxctl --help            {help_s * 1000:8.1f} ms   (target < 300 ms; "
          f"bare python start {python_s * 1000:.1f} ms, ratio {help_s / python_s:.1f}x)")


def bench_validate(n: int) -> None:
    sources = sorted(EXAMPLES.glob("*.yaml"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i in range(n):
            src = sources[i % len(sources)].read_text()
            name = src.split("name: ", 1)[1].split("\n", 1)[0]
            (folder / f"a{i:05d}.yaml").write_text(src.replace(f"name: {name}", f"name: agent-{i:05d}", 1))
        files = sorted(folder.glob("*.yaml"))
        t = time.perf_counter()
        for f in files:
            read_file(f)
        parse_s = time.perf_counter() - t
        t = time.perf_counter()
        report = check_paths([folder])
        validate_s = time.perf_counter() - t
        assert report.ok and len(report.resources) == n, report.diagnostics[:3]
    print(f"validate {n} files       {n / validate_s:8.0f} files/s (target >= 500; libyaml parse alone "
          f"{n / parse_s:.0f} files/s, validate costs {validate_s / parse_s:.2f}x the parse)")


def bench_append(records: int) -> None:
    body = {"kind": "Agent", "name": "bench-agent", "version": 1, "digest": "sha256:" + "ab" * 32,
            "reason": "benchmark"}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "s")
        entries = [chain.Entry("agent.version", "bench-agent", "bench", body, "2026-04-14T10:00:00Z")] * records
        t = time.perf_counter()
        with store.transaction() as conn:
            chain.append_many(conn, entries)
        batched_s = time.perf_counter() - t
        lines = [(i, "x" * 330) for i in range(records)]
        raw = sqlite3.connect(Path(tmp) / "raw.db", isolation_level=None)
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute("PRAGMA synchronous=FULL")
        raw.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, line TEXT)")
        t = time.perf_counter()
        raw.execute("BEGIN IMMEDIATE")
        raw.executemany("INSERT INTO t VALUES (?, ?)", lines)
        raw.execute("COMMIT")
        raw_s = time.perf_counter() - t
        single = []
        for _ in range(200):
            t = time.perf_counter()
            with store.transaction() as conn:
                chain.append(conn, entries[0])
            single.append(time.perf_counter() - t)
        store.close()
    single.sort()
    print(f"chain append batched     {records / batched_s:8.0f} records/s (target >= 20,000; raw SQLite insert "
          f"{records / raw_s:.0f} rows/s, ratio {raw_s / batched_s:.2f})")
    print(f"chain append fsync'd     p50 {single[len(single) // 2] * 1000:.2f} ms, "
          f"p99 {single[int(len(single) * 0.99)] * 1000:.2f} ms per single-record transaction (synchronous=FULL)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpu(s)")
    bench_help()
    bench_validate(args.files)
    bench_append(args.records)


if __name__ == "__main__":
    main()
