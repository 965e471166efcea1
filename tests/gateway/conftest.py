"""Fixtures: fake ServiceNow and Slack on loopback, a moto server, a state with an agent, and gateway processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway import upstreams
from tests.gateway.helpers import GatewayProcess, World, build_world


@pytest.fixture
def servicenow() -> Iterator[upstreams.Upstream]:
    with upstreams.serve(upstreams.ServiceNowHandler) as upstream:
        upstream.records.update({
            "chg-1": {"sys_id": "chg-1", "number": "CHG0031", "state": "-1", "close_code": "", "close_notes": ""},
            "chg-2": {"sys_id": "chg-2", "number": "CHG0032", "state": "-1", "close_code": "", "close_notes": ""},
        })
        yield upstream


@pytest.fixture
def slack() -> Iterator[upstreams.Upstream]:
    with upstreams.serve(upstreams.SlackHandler, "/api") as upstream:
        yield upstream


@pytest.fixture
def world(state_dir: Path, servicenow: upstreams.Upstream, slack: upstreams.Upstream) -> World:
    return build_world(state_dir, servicenow=servicenow.url, slack=slack.url)


@pytest.fixture
def gateways() -> Iterator[list[GatewayProcess]]:
    """Started replicas, stopped (SIGTERM, clean exit) at the end."""
    started: list[GatewayProcess] = []
    yield started
    codes = [g.stop() for g in started]
    assert codes == [0] * len(started), [g.output() for g in started]


@pytest.fixture
def gateway(world: World, gateways: list[GatewayProcess]) -> GatewayProcess:
    replica = GatewayProcess(world.state, "gw-a", ["--config", str(world.config)]).start()
    gateways.append(replica)
    return replica


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server (S3) on loopback for the session."""
    from moto.server import ThreadedMotoServer

    from tests.gateway.helpers import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
