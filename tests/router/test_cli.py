"""`arxctl router status` and `arxctl router test`: exit codes and exact output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from arxctl.router.breaker import Breaker
from arxctl.router.config import BreakerSettings
from tests.router import fakes
from tests.router.conftest import FakeClock, RedisServer, free_port
from tests.router.fakes import FakeProvider

NOW = "2026-04-14T10:00:30Z"


def _config(tmp_path: Path, anthropic: FakeProvider, openai: FakeProvider, redis_url: str | None = None) -> Path:
    text = f"""\
providers:
  - name: anthropic
    kind: anthropic
    base_url: {anthropic.base_url}
    models: {{frontier: claude-test-frontier}}
    timeouts: {{read: 1s}}
  - name: openai
    kind: openai
    base_url: {openai.base_url}
    models: {{frontier: gpt-test-frontier}}
"""
    if redis_url:
        text += f"redis: {{url: '{redis_url}'}}\n"
    path = tmp_path / "router.yaml"
    path.write_text(text)
    return path


def _trip(redis_client: Any, provider: str, failures: int) -> None:
    breaker = Breaker(BreakerSettings(), clock=FakeClock(), redis_client=redis_client)
    for _ in range(failures):
        breaker.failure(breaker.acquire(provider))


def test_status_reads_every_provider_from_redis(
    cli: Any, tmp_path: Path, anthropic: FakeProvider, openai: FakeProvider, redis_server: RedisServer,
    redis_client: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ARX_NOW", NOW)
    _trip(redis_client, "anthropic", 5)
    _trip(redis_client, "openai", 2)
    config = _config(tmp_path, anthropic, openai)
    result = cli("router", "status", "--config", str(config), "--redis", redis_server.url, "-o", "json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "redis": redis_server.url, "healthy": False,
        "breaker": {"failures": 5, "window_s": 60.0, "open_s": 120.0, "probe_timeout_s": 30.0},
        "providers": [
            {"provider": "anthropic", "kind": "anthropic", "state": "open", "failures_in_window": 5,
             "open_until": "2026-04-14T10:02:00Z", "probe_in_flight": False},
            {"provider": "openai", "kind": "openai", "state": "closed", "failures_in_window": 2,
             "open_until": None, "probe_in_flight": False},
        ],
    }
    table = cli("router", "status", "--config", str(config), "--redis", redis_server.url)
    assert table.exit_code == 1
    assert [line.rstrip() for line in table.stdout.splitlines()] == [
        f"breaker: {redis_server.url}  (5 failures in 60s open a circuit for 120s)",
        "PROVIDER   KIND       STATE   FAILURES  OPEN UNTIL            PROBE",
        "anthropic  anthropic  open    5         2026-04-14T10:02:00Z  -",
        "openai     openai     closed  2         -                     -",
    ]


def test_status_is_clean_when_every_circuit_is_closed(
    cli: Any, tmp_path: Path, anthropic: FakeProvider, openai: FakeProvider, redis_server: RedisServer,
    redis_client: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ARX_NOW", NOW)
    config = _config(tmp_path, anthropic, openai, redis_server.url)
    result = cli("router", "status", "--config", str(config), "-o", "json")
    assert result.exit_code == 0
    assert [p["state"] for p in json.loads(result.stdout)["providers"]] == ["closed", "closed"]


def test_status_without_redis_is_a_usage_error(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARX_REDIS_URL", raising=False)
    result = cli("router", "status")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: no Redis configured: pass --redis URL, set redis.url in router.yaml, or ARX_REDIS_URL\n")


def test_status_with_an_unreachable_redis_fails_without_showing_the_password(cli: Any) -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    result = cli("router", "status", "--redis", url)
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: cannot read breaker state from Redis at {url.replace('hunter2', '***')}\n")


def test_test_sends_a_tiny_request_through_the_chain_and_audits_it(
    cli: Any, tmp_path: Path, anthropic: FakeProvider, openai: FakeProvider, keys: dict, state_dir: Path,
) -> None:
    anthropic.then(fakes.error(403, "permission_error", "organization suspended"))
    result = cli("router", "test", "--config", str(_config(tmp_path, anthropic, openai)), "-o", "json",
                 "--agent", "triage-cs-01")
    assert result.exit_code == 0
    out = json.loads(result.stdout)
    for a in out["attempts"]:
        assert isinstance(a.pop("latency_ms"), float)
    assert out == {
        "ok": True, "provider_used": "openai", "failover_hops": 1, "breaker": "local",
        "text": "hello from the fake", "error": None,
        "attempts": [
            {"provider": "anthropic", "model": "claude-test-frontier", "ok": False, "kind": "LLMAuthError",
             "error_type": "permission_error", "status_code": 403},
            {"provider": "openai", "model": "gpt-test-frontier", "ok": True, "kind": None, "error_type": None,
             "status_code": 200},
        ],
    }
    assert openai.received[0].body["messages"] == [{"role": "user", "content": "Reply with the single word: ok"}]
    assert openai.received[0].body["max_completion_tokens"] == 16
    shown = cli("chain", "show", "-o", "json")
    records = json.loads(shown.stdout)
    assert [(r["type"], r["agent"], r["actor"]) for r in records] == [("llm.chat", "triage-cs-01", "tester")]
    body = records[0]["body"]
    assert (body["provider_used"], body["failover_hops"], body["outcome"]) == ("openai", 1, "ok")
    assert [(a["provider"], a["kind"], a["status_code"]) for a in body["attempts"]] == [
        ("anthropic", "LLMAuthError", 403), ("openai", None, 200)]
    assert cli("chain", "verify").exit_code == 0


def test_test_fails_with_exit_1_when_no_provider_answers(
    cli: Any, tmp_path: Path, anthropic: FakeProvider, openai: FakeProvider, keys: dict,
) -> None:
    anthropic.then(fakes.error(529, "overloaded_error", "Overloaded"))
    openai.then(fakes.error(401, "invalid_request_error", "bad key", code="invalid_api_key"))
    result = cli("router", "test", "--config", str(_config(tmp_path, anthropic, openai)))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["PROVIDER", "MODEL", "RESULT", "STATUS", "LATENCY"]
    assert [line.split()[:4] for line in lines[1:3]] == [
        ["anthropic", "claude-test-frontier", "LLMOverloadedError", "(overloaded_error)"],
        ["openai", "gpt-test-frontier", "LLMAuthError", "(invalid_api_key)"],
    ]
    assert lines[3] == (
        "failed: no provider answered: anthropic: LLMOverloadedError (529); openai: LLMAuthError (401)")


def test_test_with_an_unknown_tier_is_a_usage_error(
    cli: Any, tmp_path: Path, anthropic: FakeProvider, openai: FakeProvider, keys: dict,
) -> None:
    result = cli("router", "test", "--config", str(_config(tmp_path, anthropic, openai)), "--tier", "huge")
    assert result.exit_code == 2
    assert result.stderr == "error: unknown model tier 'huge'; configured: frontier\n"
    assert anthropic.hits == 0


def test_a_bad_config_is_a_usage_error_with_its_position(cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "router.yaml"
    path.write_text("providers:\n  - name: anthropic\n    kind: anthropik\n")
    result = cli("router", "test", "--config", str(path))
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {path}:3:11: ARX103 $.providers[0].kind: must be one of: anthropic, openai, openai-compatible\n")


@pytest.mark.parametrize("command", ["status", "test"])
def test_help_has_an_example(cli: Any, command: str) -> None:
    result = cli("router", command, "--help")
    assert result.exit_code == 0
    assert "Example: arxctl router " + command in result.stdout
