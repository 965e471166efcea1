"""What each provider puts on the wire, read back by the loopback servers."""

from __future__ import annotations

import pytest

from arxctl.router import Router
from arxctl.router.config import ProviderSpec, RouterConfig
from tests.router.conftest import ANTHROPIC_KEY, OPENAI_KEY, Rows, make_config
from tests.router.fakes import FakeProvider

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Close CHG0031?"},
    {"role": "assistant", "content": "Which ticket system?"},
    {"role": "system", "content": "Never close two at once."},
    {"role": "user", "content": "ServiceNow."},
]


def test_anthropic_messages_request(anthropic: FakeProvider, keys: dict, rows: Rows) -> None:
    with Router.from_config(make_config(anthropic), audit=rows) as router:
        router.chat(CHAT, max_tokens=64, temperature=0.2)
        list(router.stream(CHAT, model_tier="fast"))
    plain, streamed = anthropic.received
    assert plain.path == "/v1/messages"
    assert {k: plain.headers[k] for k in ("x-api-key", "anthropic-version", "content-type")} == {
        "x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    assert "authorization" not in plain.headers
    assert plain.body == {
        "model": "claude-test-frontier", "max_tokens": 64, "temperature": 0.2,
        "system": "Be brief.\n\nNever close two at once.",
        "messages": [
            {"role": "user", "content": "Close CHG0031?"},
            {"role": "assistant", "content": "Which ticket system?"},
            {"role": "user", "content": "ServiceNow."},
        ],
    }
    assert streamed.body == {
        "model": "claude-test-fast", "max_tokens": 1024, "stream": True,
        "system": "Be brief.\n\nNever close two at once.", "messages": plain.body["messages"],
    }


def test_openai_chat_completions_request(openai: FakeProvider, keys: dict, rows: Rows) -> None:
    with Router.from_config(make_config(openai), audit=rows) as router:
        router.chat(CHAT, max_tokens=64)
        list(router.stream(CHAT))
    plain, streamed = openai.received
    assert plain.path == "/v1/chat/completions"
    assert plain.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert "x-api-key" not in plain.headers
    assert plain.body == {"model": "gpt-test-frontier", "messages": CHAT, "max_completion_tokens": 64}
    assert streamed.body == {
        "model": "gpt-test-frontier", "messages": CHAT, "max_completion_tokens": 1024, "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_openai_compatible_request_without_a_key(openai: FakeProvider, rows: Rows) -> None:
    spec = ProviderSpec("local-llm", "openai-compatible", openai.base_url, None, {"frontier": "llama-test"})
    with Router.from_config(RouterConfig(providers=(spec,), order=("local-llm",)), audit=rows, env={}) as router:
        response = router.chat(CHAT, max_tokens=32)
        list(router.stream(CHAT))
    assert (response.provider, response.model) == ("local-llm", "llama-test")
    plain, streamed = openai.received
    assert "authorization" not in plain.headers
    assert plain.body == {"model": "llama-test", "messages": CHAT, "max_tokens": 32}
    assert streamed.body == {"model": "llama-test", "messages": CHAT, "max_tokens": 1024, "stream": True}


def test_a_rotated_key_is_used_on_the_next_call(anthropic: FakeProvider, rows: Rows,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-old-0001")
    with Router.from_config(make_config(anthropic), audit=rows) as router:
        router.chat(CHAT)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-new-0002")
        router.chat(CHAT)
    assert [r.headers["x-api-key"] for r in anthropic.received] == ["sk-ant-old-0001", "sk-ant-new-0002"]
