"""LLM router benchmarks: per-call overhead over a direct httpx call, and cross-process breaker visibility.

- Overhead: `Router.chat` (Redis breaker, in-memory audit sink) against a direct `httpx.Client.post` plus JSON
  parse of the same request to the same loopback OpenAI-shaped server (run in its own process), measured in
  interleaved rounds in this run. Target: overhead <= 1 ms at p50.
- Visibility: a watcher process polls the breaker gate (what every routed call does first) while this
  process trips the circuit; the delay between the start of the tripping failure and the watcher seeing
  `open` is measured with CLOCK_MONOTONIC, which both processes share. Target: <= 1 s.

Run: .venv/bin/python bench/router.py [--calls 3000] [--trips 30]   (needs redis-server on PATH)
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402
import redis  # noqa: E402

from arxctl.router import Router  # noqa: E402
from arxctl.router.audit import AuditRow, ChainSink  # noqa: E402
from arxctl.router.breaker import Breaker, Gate  # noqa: E402
from arxctl.router.config import BreakerSettings, ProviderSpec, RedisSettings, RouterConfig  # noqa: E402
from arxctl.store.sqlite import Store  # noqa: E402

DEADLINE = 10.0
KEY = "sk-bench-not-a-real-key"
MESSAGES = [{"role": "user", "content": "Summarise CHG0031 in one line."}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", directory],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                sys.exit("redis-server did not start")
            try:
                process.wait(timeout=0.02)
                sys.exit("redis-server exited")
            except subprocess.TimeoutExpired:
                pass
    client.close()
    return process, f"redis://127.0.0.1:{port}/0"


def start_provider() -> tuple[subprocess.Popen[str], str]:
    """The loopback OpenAI-shaped server from the test suite, in its own process."""
    process = subprocess.Popen([sys.executable, "-m", "tests.router.fakes", "openai"], cwd=ROOT,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    port = int(process.stdout.readline())
    return process, f"http://127.0.0.1:{port}/v1"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_overhead(base_url: str, redis_url: str, calls: int, state_dir: Path) -> bool:
    spec = ProviderSpec("openai", "openai", base_url, "BENCH_KEY", {"frontier": "gpt-bench"})
    config = RouterConfig(providers=(spec,), order=("openai",), redis=RedisSettings(url=redis_url))
    env = {"BENCH_KEY": KEY}
    rows: list[AuditRow] = []
    direct_client = httpx.Client(base_url=base_url, timeout=10, transport=httpx.HTTPTransport(retries=0))
    body = {"model": "gpt-bench", "messages": MESSAGES, "max_completion_tokens": 1024}
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}

    def direct() -> None:
        response = direct_client.post("/chat/completions", content=orjson.dumps(body), headers=headers)
        response.raise_for_status()
        orjson.loads(response.content)

    store = Store(state_dir)
    with Router.from_config(config, audit=rows.append, env=env) as router, \
            Router.from_config(config, audit=ChainSink(store), env=env) as chained:
        variants = {
            "direct": direct,
            "router": lambda: router.chat(MESSAGES),
            "chain": lambda: chained.chat(MESSAGES),
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        for fn in variants.values():
            for _ in range(200):
                fn()
        rounds = 10
        for _ in range(rounds):
            for name, fn in variants.items():
                bucket = times[name]
                for _ in range(calls // rounds):
                    start = time.perf_counter()
                    fn()
                    bucket.append(time.perf_counter() - start)
        assert all(r.body["breaker"] == "redis" for r in rows)
    direct_client.close()
    store.close()
    p50 = {name: statistics.median(v) * 1000 for name, v in times.items()}
    p90 = {name: percentile(v, 0.9) * 1000 for name, v in times.items()}
    overhead = p50["router"] - p50["direct"]
    print(f"router overhead ({calls} calls each, interleaved, loopback OpenAI-shaped server in its own process)")
    print(f"  direct httpx post + parse (anchor)  p50 {p50['direct']:7.3f} ms   p90 {p90['direct']:7.3f} ms")
    print(f"  router.chat, redis breaker          p50 {p50['router']:7.3f} ms   p90 {p90['router']:7.3f} ms   "
          f"ratio {p50['router'] / p50['direct']:.2f}x")
    print(f"  overhead at p50                         {overhead:7.3f} ms   (target <= 1.000 ms: "
          f"{'met' if overhead <= 1.0 else 'MISSED'})")
    print(f"  router.chat + chain audit (SQLite)  p50 {p50['chain']:7.3f} ms   p90 {p90['chain']:7.3f} ms   "
          f"ratio {p50['chain'] / p50['direct']:.2f}x  (durable fsync'd audit row per call)")
    return overhead <= 1.0


def watcher(redis_url: str, conn: Connection) -> None:
    """Poll the gate for each provider name received until it reads open; report when it did."""
    client = redis.Redis.from_url(redis_url)
    breaker = Breaker(BreakerSettings(), redis_client=client)
    while True:
        name = conn.recv()
        if name is None:
            return
        conn.send("ready")
        deadline = time.monotonic() + DEADLINE
        seen = None
        while time.monotonic() < deadline:
            if breaker.acquire(name).state == "open":
                seen = time.monotonic()
                break
        conn.send(seen)


def bench_visibility(redis_url: str, trips: int) -> bool:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=watcher, args=(redis_url, child), daemon=True)
    process.start()
    client = redis.Redis.from_url(redis_url)
    breaker = Breaker(BreakerSettings(), redis_client=client)
    delays: list[float] = []
    for i in range(trips):
        name = f"provider-{i}"
        for _ in range(4):
            breaker.failure(Gate(name, "closed", None, "redis"))
        parent.send(name)
        if not parent.poll(DEADLINE) or parent.recv() != "ready":
            sys.exit("watcher did not start")
        start = time.monotonic()
        breaker.failure(Gate(name, "closed", None, "redis"))
        if not parent.poll(DEADLINE):
            sys.exit("watcher did not answer")
        seen = parent.recv()
        if seen is None:
            sys.exit(f"watcher never saw {name} open")
        delays.append((seen - start) * 1000)
    parent.send(None)
    process.join(timeout=DEADLINE)
    p50, worst = statistics.median(delays), max(delays)
    print(f"breaker visibility in a second process ({trips} trips)")
    print(f"  p50 {p50:7.3f} ms   max {worst:7.3f} ms   (target <= 1000 ms: "
          f"{'met' if worst <= 1000 else 'MISSED'}; ratio to target {worst / 1000:.4f})")
    return worst <= 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--trips", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        redis_process, redis_url = start_redis(tmp)
        provider, base_url = start_provider()
        try:
            ok = bench_overhead(base_url, redis_url, args.calls, Path(tmp) / "state")
            ok = bench_visibility(redis_url, args.trips) and ok
        finally:
            assert provider.stdin is not None
            provider.stdin.close()
            provider.wait(timeout=DEADLINE)
            redis_process.terminate()
            redis_process.wait(timeout=DEADLINE)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
