"""`llm.chat.create` through the router inside the gateway: the keys are the platform's credential, a failing
provider hands over to the next, and the attempts are recorded with the call."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from arxctl.sdk import Connector
from tests.gateway import upstreams
from tests.gateway.helpers import GatewayProcess, World, build_world, replica_records
from tests.router import fakes


@pytest.fixture
def providers() -> Iterator[tuple[fakes.FakeProvider, fakes.FakeProvider]]:
    anthropic, openai = fakes.FakeProvider("anthropic").start(), fakes.FakeProvider("openai").start()
    yield anthropic, openai
    anthropic.stop()
    openai.stop()


def test_chat_fails_over_with_the_platform_keys(state_dir: Path, servicenow: upstreams.Upstream,
                                                slack: upstreams.Upstream, gateways: list[GatewayProcess],
                                                providers: tuple[fakes.FakeProvider, fakes.FakeProvider]) -> None:
    anthropic, openai = providers
    router = state_dir.parent / "router.yaml"
    router.write_text(
        "providers:\n"
        f"  - {{name: anthropic, kind: anthropic, base_url: '{anthropic.base_url}', models: {{frontier: claude-t}}}}\n"
        f"  - {{name: openai, kind: openai, base_url: '{openai.base_url}', models: {{frontier: gpt-t}}}}\n")
    world: World = build_world(state_dir, servicenow=servicenow.url, slack=slack.url, router=router)
    anthropic.then(fakes.error(529, "overloaded_error", "Overloaded"))
    openai.then(fakes.ok("CHG0031 is a duplicate of CHG0007"))
    gateway = GatewayProcess(world.state, "gw-llm", ["--config", str(world.config)]).start()
    gateways.append(gateway)
    llm = Connector("llm", gateway=gateway.url, handle=world.tokens["llm"], session="s-llm")
    result = llm.call("chat.create", {"messages": [{"role": "user", "content": "Summarise CHG0031."}]})
    assert (result.status, result.json()) == (200, {
        "text": "CHG0031 is a duplicate of CHG0007", "provider": "openai", "model": "gpt-t", "model_tier": "frontier",
        "stop_reason": "stop", "usage": {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18},
        "failover_hops": 1})
    assert [r.headers.get("x-api-key") for r in anthropic.received] == ["sk-ant-gateway-0001"]
    assert [r.headers.get("authorization") for r in openai.received] == ["Bearer sk-gateway-0002"]
    [record] = replica_records(world.state, "gw-llm")
    downstream = record["body"]["gateway"]["downstream"]
    assert (downstream["status"], downstream["ok"]) == (200, True)
    assert [(a["provider"], a["ok"], a["kind"]) for a in downstream["detail"]["attempts"]] == [
        ("anthropic", False, "LLMOverloadedError"), ("openai", True, None)]
    assert "sk-ant-gateway-0001" not in str(record)
