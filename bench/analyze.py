"""`arxctl analyze` against bandit on the same large Python tree, measured in the same run.

Target (issue #7): on the installed `kubernetes` client package, wall time <= bandit's. Both run as child
processes; wall time and peak RSS come from os.wait4. Memory must stay flat as the tree grows, so arxctl also
runs in one process (-j 1) on a quarter of the tree and on the whole tree, and both peak RSS figures are
printed (with -j N the parent's RSS is shown; workers are separate processes of the same size).

Run: .venv/bin/python bench/analyze.py [TREE] [--workers N] [--deadline SECONDS]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def default_tree() -> Path:
    import kubernetes

    return Path(kubernetes.__file__).parent


def count_lines(tree: Path) -> tuple[int, int]:
    files = lines = 0
    for path in tree.rglob("*.py"):
        files += 1
        with path.open("rb") as handle:
            lines += sum(1 for _ in handle)
    return files, lines


def measure(argv: list[str], deadline: float) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB, exit code) of one child process; killed at the deadline."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    timer = threading.Timer(deadline, proc.kill)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode < 0:
        raise SystemExit(f"{argv[2]} killed after the {deadline:.0f} s deadline")
    return wall, usage.ru_maxrss / 1024, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tree", nargs="?", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--deadline", type=float, default=900.0, help="Kill a run that takes longer (seconds).")
    args = parser.parse_args()
    tree = (args.tree or default_tree()).resolve()
    files, lines = count_lines(tree)
    print(f"tree: {tree}")
    print(f"      {files} Python files, {lines} lines; {args.workers} worker(s) for arxctl")
    with tempfile.TemporaryDirectory() as state:
        arx = [sys.executable, "-m", "arxctl", "analyze", str(tree), "-f", "json", "-j", str(args.workers),
               "--state", state]
        ours, ours_rss, code = measure(arx, args.deadline)
        if code not in (0, 1):
            raise SystemExit(f"arxctl analyze exited {code}")
        single = [*arx[:-4], "-j", "1", "--state", state]
        _, whole_rss, _ = measure(single, args.deadline)
        quarter = sorted(p for p in tree.iterdir() if p.is_dir() and not p.name.startswith("_"))
        part = [str(p) for p in quarter[: max(1, len(quarter) // 4)]]
        _, part_rss, _ = measure([*single[:4], *part, *single[5:]], args.deadline)
    bandit = [sys.executable, "-m", "bandit", "-q", "-r", str(tree), "-f", "json", "-o", os.devnull]
    theirs, theirs_rss, code = measure(bandit, args.deadline)
    if code not in (0, 1):
        raise SystemExit(f"bandit exited {code}")
    print(f"arxctl analyze  {ours:8.2f} s  {lines / ours:10.0f} lines/s  peak RSS {ours_rss:7.1f} MiB")
    print(f"bandit          {theirs:8.2f} s  {lines / theirs:10.0f} lines/s  peak RSS {theirs_rss:7.1f} MiB")
    print(f"ratio arxctl/bandit wall time: {ours / theirs:.2f} (target <= 1.00): "
          f"{'PASS' if ours <= theirs else 'FAIL'}")
    print(f"memory (one process, -j 1): peak RSS {part_rss:.1f} MiB on {len(part)} of {len(quarter)} top-level "
          f"packages, {whole_rss:.1f} MiB on the whole tree")


if __name__ == "__main__":
    main()
