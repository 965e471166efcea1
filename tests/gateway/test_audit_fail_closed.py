"""When the replica's chain cannot be written, the gateway stops making calls until it can (fail closed)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from arxctl.chain import store as chain
from arxctl.chain.records import Record
from arxctl.gateway.audit import ReplicaLog
from arxctl.gateway.calls import Answer, Gateway
from arxctl.gateway.config import load_config
from arxctl.gateway.drivers import build_drivers
from arxctl.gateway.enforcement import Enforcer, StateSource
from tests.gateway import upstreams
from tests.gateway.helpers import World


class BrokenDisk(ReplicaLog):
    """A replica log whose appends fail while `broken` is set, as on a full or failed disk."""

    broken = False

    def append(self, entry: chain.Entry) -> Record:
        if self.broken:
            self.healthy = False
            raise OSError(28, "No space left on device")
        return super().append(entry)


def test_an_unwritable_audit_log_stops_calls_until_it_recovers(world: World, servicenow: upstreams.Upstream,
                                                               tmp_path: Path) -> None:
    log = BrokenDisk(world.state, "gw-disk")
    enforcer = Enforcer(StateSource(world.state))
    enforcer.reload()
    warnings: list[str] = []
    gateway = Gateway(enforcer=enforcer, drivers=build_drivers(load_config(world.config)), log=log, desk=None,
                      replica="gw-disk", warn=warnings.append)
    body = orjson.dumps({"action": "servicenow.change.read", "payload": {"sys_id": "chg-1"}, "session": "s-1"})
    token = world.tokens["servicenow"]

    async def scenario() -> list[Answer]:
        await gateway.drivers.start()
        try:
            answers = [await gateway.call(token, body)]
            log.broken = True
            answers += [await gateway.call(token, body), await gateway.call(token, body)]
            log.broken = False
            answers += [await gateway.call(token, body), await gateway.call(token, body)]
            return answers
        finally:
            await gateway.drivers.close()

    answers = asyncio.run(scenario())
    gateway.close()
    log.close()
    assert [(a.status, dict(a.headers).get("arx-error"), dict(a.headers).get("arx-audit")) for a in answers] == [
        (200, None, None), (200, None, "failed"), (503, "audit-unavailable", None), (503, "audit-unavailable", None),
        (200, None, None)]
    assert len(servicenow.requests()) == 3
    assert warnings == ["audit append failed (OSError); refusing calls until the log is writable"] * 2
