"""Holds and reactivations from Agent statuses applied to the operator's store: through the lifecycle, each with
its chain record (actor and reason) and its marks in one transaction."""

from __future__ import annotations

from pathlib import Path

from arxctl.chain.records import Record
from arxctl.operator.ledger import Ledger
from arxctl.operator.reconcile import Hold
from arxctl.policy.bundle import resource_doc
from arxctl.registry import lifecycle
from tests.policy.helpers import agent_doc

NS = "payments"
REASON = "drift critical (drift-1): undeclared-action servicenow.change.delete"


def _ledger(tmp_path: Path) -> Ledger:
    ledger = Ledger(tmp_path, "arx-operator")
    ledger.register(NS, [resource_doc(agent_doc())])
    return ledger


def _hold(action: str, actor: str, reason: str, *marks: tuple[str, str]) -> Hold:
    return Hold("triage-cs-01", "uid", action, actor, reason, {"reason": reason}, marks)


def _last(ledger: Ledger) -> Record:
    (line,) = ledger.store(NS).conn.execute("SELECT line FROM chain ORDER BY seq DESC LIMIT 1").fetchone()
    return Record.from_line(line)


def test_holds_go_through_the_lifecycle_with_actor_and_reason(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    try:
        [(_, outcome)] = ledger.hold(NS, [_hold("suspend", "gateway/gw-a", REASON, ("Agent/triage-cs-01/suspension",
                                                                                   "sha256:1"))])
        assert outcome == "suspended: every call is denied"
        record = _last(ledger)
        assert (record.type, record.agent, record.actor, record.body) == (
            "agent.suspended", "triage-cs-01", "gateway/gw-a", {"reason": REASON, "source": "drift"})
        view = ledger.view(NS)
        head = view.heads[("Agent", "triage-cs-01")]
        assert (head.status, head.suspension) == ("suspended", {"by": "gateway/gw-a", "at": record.ts,
                                                                "reason": REASON, "source": "drift"})
        assert view.marks == {"Agent/triage-cs-01/suspension": "sha256:1"}

        [(_, outcome)] = ledger.hold(NS, [_hold("throttle", "gateway/gw-b", "drift medium")])
        assert outcome == "already suspended"
        record = _last(ledger)
        assert (record.type, record.actor, record.body) == ("agent.hold_reported", "gateway/gw-b", {
            "status": {"reason": "drift medium"}, "agent": "triage-cs-01", "outcome": "already suspended"})

        [(_, outcome)] = ledger.hold(NS, [_hold("reactivate", "", "", ("Agent/triage-cs-01/reactivation", "sha256:2"))])
        assert outcome == "reactivation refused: status.reactivation needs `by` and `reason`"
        assert (_last(ledger).type, ledger.view(NS).heads[("Agent", "triage-cs-01")].status) == (
            "agent.reactivation_refused", "suspended")

        [(_, outcome)] = ledger.hold(NS, [_hold("reactivate", "carol", "false positive")])
        assert outcome == "reactivated: the suspension is lifted"
        record = _last(ledger)
        assert (record.type, record.actor, record.body["reason"], record.body["suspended_by"]) == (
            "agent.reactivated", "carol", "false positive", "gateway/gw-a")
        assert ledger.view(NS).heads[("Agent", "triage-cs-01")].status == "active"
    finally:
        ledger.close()


def test_a_throttle_and_a_manual_hold_and_nothing_to_lift(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    try:
        [(_, outcome)] = ledger.hold(NS, [_hold("reactivate", "carol", "just in case")])
        assert (outcome, _last(ledger).type) == ("nothing to lift: the agent is active and not throttled",
                                                 "agent.reactivation_skipped")
        [(_, outcome)] = ledger.hold(NS, [_hold("throttle", "gateway/gw-a", "drift medium")])
        assert outcome == "throttled: write, destructive and containment calls need approval"
        assert ledger.view(NS).heads[("Agent", "triage-cs-01")].throttle == {
            "by": "gateway/gw-a", "at": _last(ledger).ts, "reason": "drift medium", "source": "drift"}
        [(_, outcome)] = ledger.hold(NS, [_hold("suspend", "dana", "on call: stop it now")])
        assert outcome == "suspended: every call is denied"
        held = lifecycle.status(ledger.store(NS), "triage-cs-01")
        assert (held.suspended_by, held.suspended_source, held.throttled) == ("dana", "manual", True)
        [(_, outcome)] = ledger.hold(NS, [_hold("reactivate", "carol", "reviewed")])
        assert outcome == "reactivated: the suspension and throttle are lifted"
        held = lifecycle.status(ledger.store(NS), "triage-cs-01")
        assert (held.status, held.throttled) == ("active", False)
    finally:
        ledger.close()
