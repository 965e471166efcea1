"""No sequence of lifecycle operations yields ALLOW for a suspended or decommissioned agent, or for an action
outside the manifest and the live grants (hypothesis stateful test against a real store)."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from arxctl.clock import format_ts, parse_ts
from arxctl.errors import InputError
from arxctl.policy.engine import Call, decide
from arxctl.policy.state import load_state, record_call
from arxctl.registry import approvals, grants, lifecycle
from arxctl.registry import config as project
from arxctl.registry import resources as registry
from arxctl.registry.decommission import decommission
from arxctl.store.sqlite import Store
from tests.lifecycle.helpers import CHANGE_POLICY, CONFIG, assert_verifies, register
from tests.policy.helpers import agent_doc

AGENTS = ("a1", "a2")
DECLARED = frozenset({"servicenow.change.read", "servicenow.change.close", "slack.chat.post",
                      "aws.s3.delete_object", "aws.s3.get_object", "crowdstrike.host.contain"})
ACTIONS = ("servicenow.change.read", "servicenow.change.close", "slack.chat.post", "aws.s3.put_bucket_acl",
           "github.repos.get", "jira.issue.create")
PAYLOADS = ({"change_ids": ["A"]}, {"change_ids": ["A", "B"]}, {"bucket": "b1"}, {"bucket": "b2"})
SCOPES = ({}, {"bucket": "b1"})


@dataclass
class ModelGrant:
    """The test's own account of a grant, kept independently of the implementation."""

    id: str
    agent: str
    actions: frozenset[str]
    scope: dict[str, Any]
    ttl: timedelta
    phase: str = "Pending"
    approved_at: datetime | None = None
    ended_at: datetime | None = None

    def covers(self, action: str, payload: dict[str, Any], at: datetime) -> bool:
        if self.approved_at is None or action not in self.actions:
            return False
        end = self.approved_at + self.ttl
        if self.ended_at is not None:
            end = min(end, self.ended_at)
        return self.approved_at <= at < end and all(payload.get(k) == v for k, v in self.scope.items())


class Lifecycle(RuleBasedStateMachine):
    """Random grant, approval, suspension and decommission sequences with the invariant checked after each step."""

    @initialize()
    def setup(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="arx-prop-"))
        self.store = Store(self.tmp / "state")
        register(self.store, *(agent_doc(name) for name in AGENTS), CHANGE_POLICY)
        (self.tmp / "state" / "config.yaml").write_text(CONFIG)
        self.config = project.load(self.tmp / "state")
        self.catalog = registry.catalog(self.store)
        self.now = parse_ts("2026-04-14T10:00:00Z")
        self.status = dict.fromkeys(AGENTS, "active")
        self.grants: dict[str, ModelGrant] = {}

    def teardown(self) -> None:
        if hasattr(self, "store"):
            assert_verifies(self.store)
            self.store.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _allowed(self, agent: str, action: str, payload: dict[str, Any]) -> bool:
        """Whether the model permits ALLOW at all: an active agent, and a declared action or a live grant."""
        if self.status[agent] != "active":
            return False
        return action in DECLARED or any(
            g.agent == agent and g.covers(action, payload, self.now) for g in self.grants.values())

    def _check(self, agent: str, action: str, payload: dict[str, Any], verdict: str, reason: str, total: int) -> None:
        if verdict == "ALLOW":
            assert self._allowed(agent, action, payload), (agent, action, payload, reason, self.status)
        if self.status[agent] != "active":
            assert (verdict, reason, total) == ("DENY", f"agent-{self.status[agent]}", 100)

    @rule(minutes=st.integers(1, 20))
    def tick(self, minutes: int) -> None:
        self.now += timedelta(minutes=minutes)

    @rule(agent=st.sampled_from(AGENTS), action=st.sampled_from(ACTIONS), scope=st.sampled_from(SCOPES),
          ttl=st.integers(5, 90))
    def request(self, agent: str, action: str, scope: dict[str, Any], ttl: int) -> None:
        if self.status[agent] == "decommissioned":
            try:
                grants.request(self.store, agent=agent, actions=[action], scope=scope, ttl=f"{ttl}m", reason="r",
                               requested_by="ops", catalog=self.catalog, at=self.now)
            except InputError:
                return
            raise AssertionError("a decommissioned agent got a grant request")
        made = grants.request(self.store, agent=agent, actions=[action], scope=scope, ttl=f"{ttl}m", reason="r",
                              requested_by="ops", catalog=self.catalog, at=self.now)
        self.grants[made.id] = ModelGrant(made.id, agent, frozenset([action]), dict(scope), timedelta(minutes=ttl))

    @precondition(lambda self: any(g.phase == "Pending" for g in self.grants.values()))
    @rule(data=st.data(), deny=st.sampled_from([False, False, True]))
    def answer(self, data: st.DataObject, deny: bool) -> None:
        grant = data.draw(st.sampled_from([g for g in self.grants.values() if g.phase == "Pending"]))
        if self.status[grant.agent] == "decommissioned":
            return
        if deny:
            grants.deny(self.store, grant.id, actor="priya", config=self.config, at=self.now)
            grant.phase = "Denied"
        else:
            grants.approve(self.store, grant.id, actor="priya", config=self.config, at=self.now)
            grant.phase, grant.approved_at = "Approved", self.now

    def _live(self, grant: ModelGrant) -> bool:
        if grant.ended_at is not None or self.status[grant.agent] == "decommissioned":
            return False
        if grant.phase == "Pending":
            return True
        return grant.phase == "Approved" and grant.approved_at is not None and self.now < grant.approved_at + grant.ttl

    @precondition(lambda self: any(self._live(g) for g in self.grants.values()))
    @rule(data=st.data())
    def revoke(self, data: st.DataObject) -> None:
        grant = data.draw(st.sampled_from([g for g in self.grants.values() if self._live(g)]))
        grants.revoke(self.store, grant.id, actor="carol", reason="r", config=self.config, at=self.now)
        grant.phase, grant.ended_at = "Revoked", self.now

    @precondition(lambda self: any(not self._live(g) for g in self.grants.values()))
    @rule(data=st.data())
    def revoke_ended(self, data: st.DataObject) -> None:
        grant = data.draw(st.sampled_from([g for g in self.grants.values() if not self._live(g)]))
        try:
            grants.revoke(self.store, grant.id, actor="carol", reason="r", config=self.config, at=self.now)
        except InputError:
            return
        raise AssertionError(f"revoked a grant that was not live: {grant}")

    @rule()
    def expire(self) -> None:
        grants.expire(self.store, actor="cron", at=self.now)
        approvals.expire_due(self.store, actor="cron", at=self.now)

    @rule(agent=st.sampled_from(AGENTS))
    def suspend(self, agent: str) -> None:
        if self.status[agent] == "active":
            lifecycle.suspend(self.store, agent, actor="ops", reason="r", ts=format_ts(self.now))
            self.status[agent] = "suspended"

    @rule(agent=st.sampled_from(AGENTS))
    def reactivate(self, agent: str) -> None:
        if self.status[agent] == "suspended":
            lifecycle.reactivate(self.store, agent, actor="carol", reason="r", config=self.config,
                                 ts=format_ts(self.now))
            self.status[agent] = "active"

    @rule(agent=st.sampled_from(AGENTS))
    def throttle(self, agent: str) -> None:
        if self.status[agent] != "decommissioned" and not lifecycle.status(self.store, agent).throttled:
            lifecycle.throttle(self.store, agent, actor="drift", reason="r", source="drift", ts=format_ts(self.now))

    @rule(agent=st.sampled_from(AGENTS))
    def decommission(self, agent: str) -> None:
        if self.status[agent] != "decommissioned":
            decommission(self.store, agent, actor="dana", reason="r", retention_class="sox-7yr", config=self.config,
                         at=self.now)
            self.status[agent] = "decommissioned"
            for grant in self.grants.values():
                if grant.agent == agent and grant.ended_at is None:
                    grant.ended_at = self.now

    @rule(agent=st.sampled_from(AGENTS), action=st.sampled_from(ACTIONS), payload=st.sampled_from(PAYLOADS),
          answer=st.booleans())
    def gate(self, agent: str, action: str, payload: dict[str, Any], answer: bool) -> None:
        """Record a call; when it opens an approval, a group member approves it (so later calls may use it)."""
        done = record_call(self.store, Call(ts=self.now, agent=agent, action=action, payload=payload),
                           actor="ops", config=self.config)
        d = done.decision
        self._check(agent, action, payload, d.verdict, d.reason, d.total)
        if done.approval is not None and done.approval_created and answer:
            approvals.approve(self.store, done.approval.id, actor="alice", config=self.config, at=self.now)

    @invariant()
    def never_allow_what_is_not_allowed(self) -> None:
        if not hasattr(self, "store"):
            return
        state = load_state(self.store)
        for agent in AGENTS:
            with_approvals = load_state(self.store, approvals=approvals.usable(self.store.conn, agent, self.now))
            for action in ACTIONS:
                for payload in PAYLOADS:
                    for engine_state in (state, with_approvals):
                        d = decide(Call(ts=self.now, agent=agent, action=action, payload=payload), engine_state)
                        self._check(agent, action, payload, d.verdict, d.reason, d.total)


Lifecycle.TestCase.settings = settings(max_examples=200, stateful_step_count=30, deadline=None,
                                       suppress_health_check=[HealthCheck.too_slow])
TestLifecycle = Lifecycle.TestCase
