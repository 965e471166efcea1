"""The lifecycle API: suspend, reactivate, throttle, unthrottle and status, and what the engine makes of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from arxctl.errors import InputError, NotFoundError
from arxctl.policy.engine import Call, decide
from arxctl.policy.state import load_state
from arxctl.registry import config as project
from arxctl.registry import lifecycle
from arxctl.registry.config import NotPermitted
from tests.lifecycle.helpers import T0, assert_verifies, bodies, fails, populated, types


@pytest.fixture
def store(tmp_path: Path):
    s = populated(tmp_path / "state")
    yield s
    s.close()


def _verdict(store, action: str = "servicenow.change.read", agent: str = "triage-cs-01") -> tuple[str, str, int]:
    d = decide(Call(ts=T0, agent=agent, action=action, payload={"change_ids": ["C1"]}), load_state(store))
    return d.verdict, d.reason, d.total


def test_suspend_denies_at_the_intercept_and_records(store) -> None:
    record = lifecycle.suspend(store, "triage-cs-01", actor="drift-bot", reason="undeclared connector", source="drift",
                               ts=T0)
    assert (record.type, record.agent, record.actor, record.ts) == ("agent.suspended", "triage-cs-01", "drift-bot", T0)
    assert record.body == {"reason": "undeclared connector", "source": "drift"}
    assert _verdict(store) == ("DENY", "agent-suspended", 100)
    assert _verdict(store, agent="triage-cs-02") == ("ALLOW", "threshold", 41)
    status = lifecycle.status(store, "triage-cs-01")
    assert (status.status, status.suspended_reason, status.suspended_source, status.suspended_at,
            status.suspended_by) == ("suspended", "undeclared connector", "drift", T0, "drift-bot")
    fails(InputError, "agent 'triage-cs-01' is already suspended (since 2026-04-14T10:00:00Z by drift-bot: "
          "undeclared connector)", lifecycle.suspend, store, "triage-cs-01", actor="x", reason="again")
    assert_verifies(store)


def test_reactivate_needs_an_admin(store) -> None:
    config = project.load(store.directory)
    lifecycle.suspend(store, "triage-cs-01", actor="ops", reason="investigating", ts=T0)
    fails(NotPermitted, f"'alice' may not reactivate agent 'triage-cs-01': only an admin listed under `admins` in "
          f"{store.directory / 'config.yaml'} may", lifecycle.reactivate, store, "triage-cs-01", actor="alice",
          reason="fixed", config=config)
    fails(NotPermitted, "'carol' may not reactivate agent 'triage-cs-01': only an admin listed under `admins` in "
          "the project config may", lifecycle.reactivate, store, "triage-cs-01", actor="carol", reason="fixed",
          config=project.ProjectConfig())
    record = lifecycle.reactivate(store, "triage-cs-01", actor="carol", reason="root cause fixed", config=config,
                                  ts="2026-04-14T11:00:00Z")
    assert record.body == {"reason": "root cause fixed", "suspended_at": T0, "suspended_by": "ops",
                           "suspended_reason": "investigating", "suspended_source": "manual"}
    assert _verdict(store) == ("ALLOW", "threshold", 41)
    assert lifecycle.status(store, "triage-cs-01").suspended_reason is None
    fails(InputError, "agent 'triage-cs-01' is active, not suspended", lifecycle.reactivate, store, "triage-cs-01",
          actor="carol", reason="again", config=config)
    assert types(store, "triage-cs-01") == ["agent.registered", "agent.suspended", "agent.reactivated"]
    assert_verifies(store)


def test_throttle_requires_approval_for_writes_only(store) -> None:
    lifecycle.throttle(store, "triage-cs-02", actor="drift-bot", reason="rate 5x declared", source="drift", ts=T0)
    assert _verdict(store, "servicenow.change.read", "triage-cs-02") == ("ALLOW", "threshold", 41)
    assert _verdict(store, "servicenow.change.close", "triage-cs-02") == ("APPROVAL_REQUIRED", "throttled", 56)
    assert lifecycle.status(store, "triage-cs-02").throttled is True
    fails(InputError, "agent 'triage-cs-02' is already throttled", lifecycle.throttle, store, "triage-cs-02",
          actor="x", reason="again")
    lifecycle.unthrottle(store, "triage-cs-02", actor="carol", reason="rate back to normal", ts=T0)
    assert _verdict(store, "servicenow.change.close", "triage-cs-02") == ("ALLOW", "threshold", 56)
    assert bodies(store, "agent.unthrottled") == [{"reason": "rate back to normal", "throttled_at": T0,
                                                   "throttled_by": "drift-bot", "throttle_reason": "rate 5x declared"}]
    fails(InputError, "agent 'triage-cs-02' is not throttled", lifecycle.unthrottle, store, "triage-cs-02",
          actor="carol", reason="again")
    assert_verifies(store)


def test_inside_the_callers_transaction_and_rolled_back_with_it(store) -> None:
    with pytest.raises(RuntimeError, match="boom"), store.transaction() as conn:
        lifecycle.suspend(conn, "triage-cs-01", actor="drift-bot", reason="critical drift", source="drift")
        raise RuntimeError("boom")
    assert lifecycle.status(store, "triage-cs-01").status == "active"
    assert types(store) == ["agent.registered", "agent.registered", "policy.registered"]
    fails(RuntimeError, "lifecycle changes on a connection must run inside Store.transaction()", lifecycle.suspend,
          store.conn, "triage-cs-01", actor="x", reason="y")


@pytest.mark.parametrize(("call", "message"), [
    (lambda s: lifecycle.suspend(s, "nobody", actor="a", reason="r"),
     "no agent 'nobody' (register it with `arxctl register`)"),
    (lambda s: lifecycle.suspend(s, "triage-cs-01", actor="a", reason="  "), "a suspension needs a --reason"),
    (lambda s: lifecycle.suspend(s, "triage-cs-01", actor="a", reason="r", source="cron"),
     "unknown source 'cron'; one of: drift, manual, operator"),
    (lambda s: lifecycle.throttle(s, "triage-cs-01", actor="a", reason=""), "a throttle needs a --reason"),
])
def test_bad_input_changes_nothing(store, call, message: str) -> None:
    with pytest.raises((InputError, NotFoundError)) as err:
        call(store)
    assert str(err.value) == message
    assert types(store) == ["agent.registered", "agent.registered", "policy.registered"]
