"""Fixtures for the router: a real redis-server, loopback fake providers, a fake clock, test keys."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from arxctl.router.audit import AuditRow
from arxctl.router.config import BreakerSettings, ProviderSpec, RedisSettings, RouterConfig
from tests.router.fakes import FakeProvider

ANTHROPIC_KEY = "sk-ant-api03-TESTSECRETanthropic0000"
OPENAI_KEY = "sk-proj-TESTSECREToPeNaI1111"
ROOT_DIR = Path(__file__).resolve().parents[2]
START_DEADLINE = 10.0
T0 = 1_776_160_800.0  # 2026-04-14T10:00:00Z


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RedisServer:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def start_redis(directory: Path, port: int | None = None) -> RedisServer:
    """Start redis-server on a free loopback port and wait (with a deadline) until it answers PING."""
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    port = port or free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2, socket_timeout=0.2)
    deadline = time.monotonic() + START_DEADLINE
    while True:
        try:
            if client.ping():
                break
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"redis-server did not answer on port {port} within {START_DEADLINE}s")
            try:
                code = process.wait(timeout=0.02)
            except subprocess.TimeoutExpired:
                continue
            pytest.fail(f"redis-server exited with code {code} before answering")
    client.close()
    return RedisServer(process, port)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[object]:
    """A client on a flushed database, so tests never see each other's breaker keys."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.close()


class FakeClock:
    """A settable clock in epoch seconds, injected into the breaker."""

    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def anthropic() -> Iterator[FakeProvider]:
    fake = FakeProvider("anthropic").start()
    yield fake
    fake.stop()


@pytest.fixture
def openai() -> Iterator[FakeProvider]:
    fake = FakeProvider("openai").start()
    yield fake
    fake.stop()


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.delenv("ARX_REDIS_URL", raising=False)
    return {"ANTHROPIC_API_KEY": ANTHROPIC_KEY, "OPENAI_API_KEY": OPENAI_KEY}


def make_config(
    *fakes: FakeProvider, read_timeout: float = 2.0, breaker: BreakerSettings | None = None,
    redis_url: str | None = None, agents: dict[str, tuple[str, ...]] | None = None,
) -> RouterConfig:
    """A config with one provider per fake (named after its flavor), in the given order."""
    providers = []
    for fake in fakes:
        key_env = "ANTHROPIC_API_KEY" if fake.flavor == "anthropic" else "OPENAI_API_KEY"
        models = ({"frontier": "claude-test-frontier", "fast": "claude-test-fast"} if fake.flavor == "anthropic"
                  else {"frontier": "gpt-test-frontier", "fast": "gpt-test-fast"})
        providers.append(ProviderSpec(fake.flavor, fake.flavor, fake.base_url, key_env, models,
                                      connect_timeout=1.0, read_timeout=read_timeout))
    return RouterConfig(
        providers=tuple(providers), order=tuple(p.name for p in providers), agents=agents or {},
        breaker=breaker or BreakerSettings(), redis=RedisSettings(url=redis_url, retry_after=5.0),
    )


class Rows(list[AuditRow]):
    """An in-memory audit sink."""

    def __call__(self, row: AuditRow) -> None:
        self.append(row)


@pytest.fixture
def rows() -> Rows:
    return Rows()
