"""router.yaml: defaults, every field, and errors that point at file:line:col without echoing values."""

from __future__ import annotations

from pathlib import Path

import pytest

from arxctl.errors import ValidationFailed
from arxctl.router.config import (
    BreakerSettings,
    ProviderSpec,
    RedisSettings,
    default_config,
    load_config,
    parse_config,
    redact_url,
    resolve_config,
)

FULL = """\
providers:
  - name: anthropic
    kind: anthropic
    models: {frontier: claude-sonnet-4-5, fast: claude-haiku-4-5}
  - name: openai
    kind: openai
    api_key_env: OPENAI_KEY_PROD
    models: {frontier: gpt-5}
    timeouts: {connect: 2s, read: 90s}
  - name: vllm
    kind: openai-compatible
    base_url: http://127.0.0.1:8000/v1/
    models: {fast: llama-3.1-8b}
order: [anthropic, openai, vllm]
agents:
  triage-cs-01: {order: [openai, anthropic]}
breaker: {failures: 3, window: 30s, open: 5m, probe_timeout: 10s}
redis: {url: "redis://:hunter2@redis.internal:6379/0", timeout: 100ms, key_prefix: "acme:breaker", retry_after: 2s}
"""


def test_defaults_are_anthropic_then_openai() -> None:
    config = default_config()
    assert config.order == ("anthropic", "openai")
    assert config.providers == (
        ProviderSpec("anthropic", "anthropic", "https://api.anthropic.com", "ANTHROPIC_API_KEY",
                     {"frontier": "claude-sonnet-4-5", "fast": "claude-haiku-4-5"}),
        ProviderSpec("openai", "openai", "https://api.openai.com/v1", "OPENAI_API_KEY",
                     {"frontier": "gpt-5", "fast": "gpt-5-mini"}),
    )
    assert (config.breaker, config.redis) == (BreakerSettings(5, 60.0, 120.0, 30.0), RedisSettings())


def test_every_field_is_read() -> None:
    config = parse_config(FULL, "router.yaml")
    assert config.providers == (
        ProviderSpec("anthropic", "anthropic", "https://api.anthropic.com", "ANTHROPIC_API_KEY",
                     {"frontier": "claude-sonnet-4-5", "fast": "claude-haiku-4-5"}),
        ProviderSpec("openai", "openai", "https://api.openai.com/v1", "OPENAI_KEY_PROD", {"frontier": "gpt-5"},
                     connect_timeout=2.0, read_timeout=90.0),
        ProviderSpec("vllm", "openai-compatible", "http://127.0.0.1:8000/v1", None, {"fast": "llama-3.1-8b"}),
    )
    assert config.order_for("triage-cs-01") == ("openai", "anthropic")
    assert config.order_for("other") == ("anthropic", "openai", "vllm")
    assert config.breaker == BreakerSettings(failures=3, window=30.0, open=300.0, probe_timeout=10.0)
    assert config.redis == RedisSettings("redis://:hunter2@redis.internal:6379/0", 0.1, "acme:breaker", 2.0)


def test_the_order_defaults_to_the_file_order() -> None:
    config = parse_config("providers:\n  - {name: openai, kind: openai}\n  - {name: anthropic, kind: anthropic}\n")
    assert config.order == ("openai", "anthropic")


@pytest.mark.parametrize(
    ("text", "rendered"),
    [
        ("providers:\n  - name: anthropic\n    kind: antropic\n",
         ["r.yaml:3:11: ARX103 $.providers[0].kind: must be one of: anthropic, openai, openai-compatible"]),
        ("providers:\n  - name: anthropic\n    kind: anthropic\n    api_key: sk-ant-REAL\n",
         ["r.yaml:4:5: ARX101 $.providers[0].api_key: unknown field 'api_key' (did you mean 'api_key_env'?); "
          "allowed: api_key_env, base_url, insecure_http, kind, models, name, timeouts"]),
        ("providers:\n  - name: anthropic\n    kind: anthropic\n    api_key_env: sk-ant-REAL-KEY\n",
         ["r.yaml:4:18: ARX103 $.providers[0].api_key_env: must name an environment variable "
          "(letters, digits, '_'); never put a key itself in the config"]),
        ("providers:\n  - {name: a, kind: anthropic}\norder: [a, opnai]\n",
         ["r.yaml:3:12: ARX103 $.order[1]: unknown provider 'opnai'; configured: a"]),
        ("providers:\n  - {name: openai, kind: openai}\nagents:\n  x: {order: [openai, openai]}\n",
         ["r.yaml:4:23: ARX103 $.agents.x.order[1]: provider 'openai' is listed twice"]),
        ("providers:\n  - {name: v, kind: openai-compatible}\n",
         ["r.yaml:2:5: ARX102 $.providers[0]: missing required field 'base_url' (openai-compatible)",
          "r.yaml:2:5: ARX102 $.providers[0]: missing required field 'models' (openai-compatible)"]),
        ("providers:\n  - {name: v, kind: openai, base_url: 'http://llm.corp.example/v1'}\n",
         ["r.yaml:2:39: ARX103 $.providers[0].base_url: plain http to a non-loopback host would send the API "
          "key in clear text; use https (or set insecure_http: true)"]),
        ("providers:\n  - {name: v, kind: openai, base_url: 'https://u:p@llm.example'}\n",
         ["r.yaml:2:39: ARX103 $.providers[0].base_url: must not carry credentials; use api_key_env"]),
        ("providers:\n  - {name: a, kind: anthropic}\nbreaker: {window: 60, open: 2 minutes}\n",
         ["r.yaml:3:19: ARX103 $.breaker.window: expected string",
          "r.yaml:3:29: ARX132 $.breaker.open: invalid duration: use a number and a unit, e.g. 250ms, 30s, 2m"]),
        ("providers:\n  - {name: a, kind: anthropic}\nbreaker: {failures: 0}\n",
         ["r.yaml:3:21: ARX103 $.breaker.failures: must be at least 1"]),
        ("providers:\n  - {name: a, kind: anthropic}\nredis: {url: 'http://redis:6379'}\n",
         ["r.yaml:3:14: ARX103 $.redis.url: must be a redis://, rediss:// or unix:// URL"]),
        ("providers: []\n", ["r.yaml:1:12: ARX103 $.providers: must not be empty"]),
        ("order: [a]\n", ["r.yaml:1:1: ARX102 $: missing required field 'providers'"]),
        ("- a\n", ["r.yaml:1:1: ARX003 $: router config must be a mapping"]),
        ("providers: [\n", ["r.yaml:2:1: ARX001 $: did not find expected node content (while parsing a flow node)"]),
    ],
)
def test_errors_point_at_the_line_and_column(text: str, rendered: list[str]) -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_config(text, "r.yaml")
    assert [d.render() for d in info.value.diagnostics] == rendered
    assert "REAL" not in str(info.value)


def test_a_missing_file_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed) as info:
        load_config(tmp_path / "nope.yaml")
    assert info.value.exit_code == 2
    assert [d.render() for d in info.value.diagnostics] == [
        f"{tmp_path / 'nope.yaml'}:1:1: ARX002 $: cannot read file: No such file or directory"]


def test_resolve_prefers_the_flag_then_the_state_dir_then_defaults(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    assert resolve_config(None, state) == default_config()
    (state / "router.yaml").write_text("providers:\n  - {name: openai, kind: openai}\n")
    assert resolve_config(None, state).order == ("openai",)
    other = tmp_path / "other.yaml"
    other.write_text("providers:\n  - {name: anthropic, kind: anthropic}\n")
    assert resolve_config(other, state).order == ("anthropic",)


def test_redis_passwords_are_hidden_when_printed() -> None:
    assert redact_url("redis://:hunter2@redis.internal:6379/0") == "redis://:***@redis.internal:6379/0"
    assert redact_url("redis://app:hunter2@redis.internal/0") == "redis://app:***@redis.internal/0"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
