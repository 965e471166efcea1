"""Two processes share breaker state through a real redis-server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from arxctl.router import LLMUnavailable, Router
from tests.router import fakes
from tests.router.conftest import ROOT_DIR, RedisServer, Rows, make_config
from tests.router.fakes import FakeProvider

CHILD = textwrap.dedent("""
    import json, sys
    from arxctl.router import Router
    from arxctl.router.config import ProviderSpec, RedisSettings, RouterConfig
    from arxctl.router.errors import LLMError

    base_url, redis_url, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
    spec = ProviderSpec("anthropic", "anthropic", base_url, "ANTHROPIC_API_KEY", {"frontier": "m"},
                        connect_timeout=1.0, read_timeout=2.0)
    config = RouterConfig(providers=(spec,), order=("anthropic",), redis=RedisSettings(url=redis_url))
    rows = []
    with Router.from_config(config, audit=rows.append) as router:
        for _ in range(calls):
            try:
                router.chat([{"role": "user", "content": "hi"}])
            except LLMError:
                pass
        health = router.health()[0]
    print(json.dumps({"health": [health.state, health.failures], "breaker": [r.body["breaker"] for r in rows],
                      "kinds": [r.body["attempts"][0]["kind"] for r in rows]}))
""")


def run_child(base_url: str, redis_url: str, calls: int) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(ROOT_DIR))
    done = subprocess.run([sys.executable, "-c", CHILD, base_url, redis_url, str(calls)], env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)


def test_failures_in_one_process_open_the_circuit_for_another(
    anthropic: FakeProvider, openai: FakeProvider, keys: dict, rows: Rows, redis_server: RedisServer,
    redis_client: Any,
) -> None:
    anthropic.default = fakes.error(529, "overloaded_error", "Overloaded")
    child = run_child(anthropic.base_url, redis_server.url, 5)
    assert child == {"health": ["open", 5], "breaker": ["redis"] * 5, "kinds": ["LLMOverloadedError"] * 5}
    assert anthropic.hits == 5
    config = make_config(anthropic, openai, redis_url=redis_server.url)
    with Router.from_config(config, audit=rows) as router:
        response = router.chat([{"role": "user", "content": "hi"}])
    assert (response.provider, response.breaker, anthropic.hits) == ("openai", "redis", 5)
    assert [a.kind for a in response.attempts] == ["LLMCircuitOpen", None]


def test_a_circuit_opened_here_is_seen_by_another_process(
    anthropic: FakeProvider, keys: dict, rows: Rows, redis_server: RedisServer, redis_client: Any,
) -> None:
    anthropic.default = fakes.error(500, "api_error", "boom")
    with Router.from_config(make_config(anthropic, redis_url=redis_server.url), audit=rows) as router:
        for _ in range(5):
            with pytest.raises(LLMUnavailable):
                router.chat([{"role": "user", "content": "hi"}])
    child = run_child(anthropic.base_url, redis_server.url, 2)
    assert child == {"health": ["open", 5], "breaker": ["redis", "redis"], "kinds": ["LLMCircuitOpen"] * 2}
    assert anthropic.hits == 5
