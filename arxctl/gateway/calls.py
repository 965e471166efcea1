"""One connector call through the gateway: check the handle, decide, then execute, wait for approval, or deny,
and record the decision, the downstream status and the latency in this replica's chain.

Framework-free: the ASGI app only turns HTTP into `Gateway.call` / `Gateway.approval` and their `Answer` back.
Everything that decides runs on the event loop (the engine's state is single-threaded); writes to the state
store (approvals, drift responses) run one at a time on a dedicated thread.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import orjson

from arxctl.canonical import digest
from arxctl.chain import store as chain
from arxctl.clock import format_ts, now
from arxctl.errors import ArxError, InputError, NotFoundError
from arxctl.gateway.approvals import ApprovalDesk, blast_radius
from arxctl.gateway.audit import ReplicaLog
from arxctl.gateway.cluster import StatusWriter, hold_for
from arxctl.gateway.drivers import Caller, Current, DriverError, Drivers
from arxctl.gateway.drivers.base import JSON
from arxctl.gateway.enforcement import Enforcer, Snapshot
from arxctl.gateway.health import Health, LiveDrift, write_report
from arxctl.policy.catalog import split_action
from arxctl.policy.compiler import APPROVAL_REQUIRED, DENY
from arxctl.policy.engine import DECOMMISSIONED, Call, Decision, decide
from arxctl.registry.handles import HandleCheck

MAX_REQUEST_BYTES = 1024 * 1024
MAX_SESSION_CHARS = 256
DECISION = "decision"
REFUSED = "call.refused"
DRIFT_DETECTED = "drift.detected"
_FIELDS = frozenset({"action", "payload", "session", "target", "reasoning", "approval"})


@dataclass(frozen=True, slots=True)
class Answer:
    """What the gateway answers: status, body and headers."""

    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class CallRequest:
    """`POST /v1/calls`: the action, its payload, the session and optionally the target, the agent's reasoning and
    the approval it is redeeming."""

    action: str
    payload: dict[str, Any]
    session: str = ""
    target: dict[str, str] | None = None
    reasoning: str | None = None
    approval: str | None = None


class BadRequest(ArxError):
    """A request the gateway cannot read: 400, nothing decided or recorded."""


def parse_call(body: bytes) -> CallRequest:
    """The call in a request body; BadRequest says what is wrong and where."""
    if len(body) > MAX_REQUEST_BYTES:
        raise BadRequest(f"the request body is larger than {MAX_REQUEST_BYTES} bytes")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise BadRequest(f"unknown field '{unknown[0]}'; allowed: {', '.join(sorted(_FIELDS))}")
    action = data.get("action")
    if not isinstance(action, str) or split_action(action) is None:
        raise BadRequest("action must be connector.resource.verb, e.g. servicenow.change.close")
    payload = data.get("payload", {})
    if not isinstance(payload, dict):
        raise BadRequest("payload must be a JSON object")
    session = data.get("session", "")
    if not isinstance(session, str) or len(session) > MAX_SESSION_CHARS:
        raise BadRequest(f"session must be a string of at most {MAX_SESSION_CHARS} characters")
    target = data.get("target")
    if target is not None and (not isinstance(target, dict) or set(target) - {"system", "env"}
                               or not all(isinstance(v, str) for v in target.values())):
        raise BadRequest("target must be an object with string fields system and env")
    reasoning = data.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, str):
        raise BadRequest("reasoning must be a string")
    approval = data.get("approval")
    if approval is not None and not isinstance(approval, str):
        raise BadRequest("approval must be an approval id string")
    return CallRequest(action, payload, session, target, reasoning, approval)


def _json(status: int, data: Any, headers: tuple[tuple[str, str], ...] = ()) -> Answer:
    return Answer(status, orjson.dumps(data), JSON, headers)


def _error(status: int, code: str, message: str, headers: tuple[tuple[str, str], ...], **extra: Any) -> Answer:
    """A gateway-made error (never a downstream answer): the `arx-error` header says which."""
    return _json(status, {"error": {"code": code, "message": message, **extra}}, (*headers, ("arx-error", code)))


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


@dataclass(slots=True)
class Counters:
    """Gateway-wide counts for /metrics."""

    requests: int = 0
    executed: int = 0
    audit_failures: int = 0
    drift_applied: int = 0


class Gateway:
    """The enforcement point: everything between an agent's request and the downstream system."""

    def __init__(self, *, enforcer: Enforcer, drivers: Drivers, log: ReplicaLog, desk: ApprovalDesk | None,
                 replica: str, state: Any = None, webhook: Any = None, clock: Callable[[], datetime] = now,
                 warn: Callable[[str], None] | None = None, cluster: StatusWriter | None = None) -> None:
        self.enforcer = enforcer
        self.drivers = drivers
        self.log = log
        self.desk = desk
        self.replica = replica
        self.actor = f"gateway/{replica}"
        self.state = state
        self.webhook = webhook
        self.clock = clock
        self.cluster = cluster
        self.health = Health(replica)
        self.drift = LiveDrift(replica)
        self.counters = Counters()
        self.warn = warn or (lambda text: print(text, file=sys.stderr, flush=True))
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="arx-gateway-state")
        self._headers = (("cache-control", "no-store"), ("arx-replica", replica))
        self._snapshot_seen: Snapshot | None = None

    # ------------------------------------------------------------------ state

    def _follow(self, snapshot: Snapshot) -> None:
        """Rebase health and live drift on a new snapshot (on the event loop, before it is used)."""
        if snapshot is self._snapshot_seen:
            return
        self._snapshot_seen = snapshot
        if snapshot.engine is not None:
            self.health.rebase(snapshot.agents)
            self.drift.rebase(snapshot.agents, snapshot.engine)

    async def _on_state_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        if self.cluster is not None:
            self.cluster.close()

    # ------------------------------------------------------------------ recording

    def _record(self, entry: chain.Entry) -> bool:
        try:
            self.log.append(entry)
        except Exception as exc:
            self.counters.audit_failures += 1
            self.warn(f"audit append failed ({type(exc).__name__}); refusing calls until the log is writable")
            return False
        return True

    def _refuse(self, start: float, at: datetime, status: int, reason: str, message: str,
                check: HandleCheck | None = None, request: CallRequest | None = None) -> Answer:
        """Answer a call refused before any decision, and record the refusal."""
        self.health.refuse(reason)
        agent = check.agent if check is not None and check.agent else None
        snapshot = self.enforcer.snapshot
        sealed = agent is not None and snapshot.engine is not None and agent in snapshot.engine.agents and \
            snapshot.engine.agents[agent].status == DECOMMISSIONED
        body = {"ts": format_ts(at), "reason": reason, "message": message, "agent": agent,
                "handle": check.id if check is not None else None,
                "action": request.action if request is not None else None,
                "session": request.session if request is not None else None,
                "replica": self.replica, "latency_ms": _ms(start)}
        self._record(chain.Entry(REFUSED, None if sealed else agent, self.actor, body, format_ts(at)))
        code = "handle-refused" if status == 401 else reason
        return _error(status, code, message, self._headers, reason=reason)

    def _decided(self, decision: Decision, call: Call, check: HandleCheck, outcome: str, start: float,
                 downstream: dict[str, Any] | None = None, downstream_ms: float | None = None,
                 approval: str | None = None, reasoning: str | None = None) -> tuple[dict[str, Any], bool]:
        record = decision.to_record()
        gateway: dict[str, Any] = {"replica": self.replica, "handle": check.id, "connector": check.connector,
                                   "outcome": outcome, "downstream": downstream, "downstream_ms": downstream_ms,
                                   "latency_ms": _ms(start)}
        if approval is not None:
            gateway["approval"] = approval
        if reasoning:
            gateway["reasoning_digest"] = digest(reasoning)
        snapshot = self.enforcer.snapshot
        info = snapshot.engine.agents.get(call.agent) if snapshot.engine is not None else None
        agent = None if info is not None and info.status == DECOMMISSIONED else call.agent
        written = self._record(chain.Entry(DECISION, agent, self.actor, {**record, "gateway": gateway},
                                           record["ts"]))
        return record, written

    def _headers_for(self, decision: Decision) -> tuple[tuple[str, str], ...]:
        return (*self._headers, ("arx-verdict", decision.verdict), ("arx-decision-id", decision.id))

    # ------------------------------------------------------------------ the call

    async def call(self, token: str | None, body: bytes) -> Answer:
        """Handle `POST /v1/calls`."""
        start = time.perf_counter()
        self.counters.requests += 1
        try:
            request = parse_call(body)
        except BadRequest as exc:
            return _error(400, "bad-request", str(exc), self._headers)
        at = self.clock()
        snapshot = self.enforcer.snapshot
        self._follow(snapshot)
        if snapshot.engine is None:
            return self._refuse(start, at, 503, "no-enforcement-state",
                                f"no valid enforcement state is loaded; every call is denied ({snapshot.error})",
                                request=request)
        if not self.log.healthy:
            return self._refuse(start, at, 503, "audit-unavailable",
                                "the audit log cannot be written; calls are refused until it can", request=request)
        check = snapshot.check_handle(token, at, getattr(self.enforcer.source, "handle", None))
        if not check.valid:
            return self._refuse(start, at, 401, check.reason, f"handle refused: {check.reason}", check, request)
        connector = request.action.partition(".")[0]
        if connector != check.connector:
            return self._refuse(start, at, 403, "wrong-connector",
                                f"the handle is for connector '{check.connector}', not '{connector}'", check, request)
        assert check.agent is not None
        call = Call(ts=at, agent=check.agent, action=request.action, payload=request.payload,
                    session=request.session, target=request.target, decision_id="d-" + secrets.token_hex(12))
        engine = snapshot.engine
        if request.approval is not None:
            if self.desk is None:
                return self._refuse(start, at, 409, "approval-unusable", "this gateway has no approval store",
                                    check, request)
            try:
                approved = await self._on_state_thread(self.desk.check, request.approval, check.agent,
                                                       request.action, digest(request.payload), at)
            except InputError as exc:
                return self._refuse(start, at, 409, "approval-unusable", str(exc), check, request)
            engine = replace(engine, approvals={check.agent: (approved,)})
        decision = decide(call, engine)
        self.health.observe(decision, time.time())
        self.drift.observe(call, decision, at)
        headers = self._headers_for(decision)
        if decision.verdict == DENY:
            record, _ = self._decided(decision, call, check, "denied", start)
            return _json(403, {"verdict": DENY, "decision": record}, headers)
        driver = self.drivers.get(connector)
        if driver is None or not driver.supports(request.action):
            why = self.drivers.missing.get(connector) or f"no driver makes {request.action}"
            record, _ = self._decided(decision, call, check, "not-driven", start)
            return _error(501, "action-not-supported", f"the gateway cannot make this call: {why}", headers,
                          decision=record)
        ref = snapshot.credential(connector, check.agent)
        assert ref is not None
        if decision.verdict == APPROVAL_REQUIRED:
            return await self._hold(decision, call, check, request, driver, ref, start, headers)
        if decision.approval_id is not None:
            assert self.desk is not None
            try:
                await self._on_state_thread(self.desk.consume, decision)
            except ArxError as exc:
                record, _ = self._decided(decision, call, check, "approval-unusable", start,
                                          approval=decision.approval_id)
                return _error(409, "approval-unusable", str(exc), headers, decision=record)
        return await self._execute(decision, call, check, request, driver, ref, start, headers)

    async def _hold(self, decision: Decision, call: Call, check: HandleCheck, request: CallRequest, driver: Any,
                    ref: Any, start: float, headers: tuple[tuple[str, str], ...]) -> Answer:
        """Open (or reuse) the pending approval and answer 202."""
        if self.desk is None:
            record, _ = self._decided(decision, call, check, "no-approval-store", start)
            return _error(403, "approval-unavailable", "the call needs approval and this gateway has no approval "
                                                       "store: denied (fail closed)", headers, decision=record)
        current = Current(None, "not shown (diffShownToApprover: false)")
        if decision.approval is None or decision.approval.diff_shown:
            try:
                current = await driver.current(call.action, call.payload, self.enforcer.secret(ref))
            except ArxError as exc:
                current = Current(None, f"unavailable: the platform credential cannot be used ({type(exc).__name__})")
        blast = blast_radius(decision, driver.blast(call.action, call.payload), current)
        try:
            approval, created = await self._on_state_thread(self.desk.open, decision, call.payload, current,
                                                            request.reasoning, blast, check.id)
        except ArxError as exc:
            record, _ = self._decided(decision, call, check, "no-approval-store", start)
            return _error(403, "approval-unavailable", f"the approval could not be opened, so the call is denied "
                                                       f"(fail closed): {exc}", headers, decision=record)
        record, _ = self._decided(decision, call, check, "approval-pending", start, approval=approval.id,
                                  reasoning=request.reasoning)
        shown_approval = {"id": approval.id, "status": approval.status, "group": approval.group,
                          "expires_at": approval.expires_at, "created": created,
                          "poll": f"/v1/approvals/{approval.id}"}
        return _json(202, {"verdict": APPROVAL_REQUIRED, "approval": shown_approval, "decision": record}, headers)

    async def _execute(self, decision: Decision, call: Call, check: HandleCheck, request: CallRequest, driver: Any,
                       ref: Any, start: float, headers: tuple[tuple[str, str], ...]) -> Answer:
        """Make the allowed call with the credential the platform holds and pass the answer through."""
        sent = time.perf_counter()
        try:
            secret = self.enforcer.secret(ref)
            downstream = await driver.call(call.action, call.payload, secret, Caller(call.agent, call.session))
        except DriverError as exc:
            self.health.downstream_failed(call.agent)
            evidence = {"status": exc.status, "ok": False, "error": exc.code, "requests": 0}
            record, written = self._decided(decision, call, check, "failed", start, evidence, _ms(sent),
                                            decision.approval_id, request.reasoning)
            audit = () if written else (("arx-audit", "failed"),)
            return _error(exc.status, exc.code, exc.message, (*headers, *audit), decision=record)
        except Exception as exc:
            code = "credential-unavailable" if isinstance(exc, ArxError) else "downstream-error"
            self.health.downstream_failed(call.agent)
            record, _ = self._decided(decision, call, check, "failed", start,
                                      {"status": 502, "ok": False, "error": code, "requests": 0},
                                      _ms(sent), decision.approval_id, request.reasoning)
            return _error(502, code, f"the call could not be made: {type(exc).__name__}", headers, decision=record)
        self.counters.executed += 1
        if not downstream.ok:
            self.health.downstream_failed(call.agent)
        _, written = self._decided(decision, call, check, "executed", start, downstream.audit(), _ms(sent),
                                   decision.approval_id, request.reasoning)
        extra = (("arx-downstream-ms", str(_ms(sent))),) + (() if written else (("arx-audit", "failed"),))
        return Answer(downstream.status, downstream.body, downstream.content_type,
                      (*headers, *extra, *downstream.headers))

    # ------------------------------------------------------------------ approvals and drift

    async def approval(self, token: str | None, approval_id: str) -> Answer:
        """Handle `GET /v1/approvals/{id}`: the agent holding a valid handle polls its own approval."""
        at = self.clock()
        snapshot = self.enforcer.snapshot
        check = snapshot.check_handle(token, at, getattr(self.enforcer.source, "handle", None))
        if not check.valid:
            self.health.refuse(check.reason)
            return _error(401, "handle-refused", f"handle refused: {check.reason}", self._headers,
                          reason=check.reason)
        if self.desk is None:
            return _error(404, "not-found", "this gateway has no approval store", self._headers)
        assert check.agent is not None
        try:
            shown = await self._on_state_thread(self.desk.status, approval_id, check.agent, at)
        except NotFoundError as exc:
            return _error(404, "not-found", str(exc), self._headers)
        return _json(200, shown, self._headers)

    async def respond_to_drift(self) -> list[str]:
        """Apply the manifest's drift response for agents that drifted since the last look; returns what was done.

        With the embedded state, `arxctl.registry.drift.apply` records `drift.detected` and throttles or
        suspends in the registry (every replica reading it follows within a poll). With a bundle, the registry is
        the operator's: this replica denies a suspended agent itself, writes the hold into the Agent's status when
        it has a cluster writer (the operator then puts it in the bundle for every replica), and records the
        finding in its own log.
        """
        snapshot = self.enforcer.snapshot
        if snapshot.engine is None:
            return []
        states = {name: (info.status, info.throttled) for name, info in snapshot.engine.agents.items()}
        due = self.drift.due(states)
        bundle = self.enforcer.source.name != "state" or self.state is None
        for found in due:
            if bundle and found.response == "suspend":
                self.enforcer.suspend_locally(found.agent, handover=self._writer() is not None)
        done = []
        for found in due:
            applied = await self._respond(found)
            self.drift.acted(found)
            self.health.drifted(found.agent, found.severity, found.response, applied)
            self.counters.drift_applied += 1
            done.append(f"{found.agent}: {found.severity} drift -> {applied}")
        return done

    def _writer(self) -> StatusWriter | None:
        """The cluster writer, when the enforced bundle names the namespace whose Agents it writes."""
        return self.cluster if self.enforcer.snapshot.namespace is not None else None

    async def _respond(self, found: Any) -> str:
        from arxctl.registry import drift

        report = self.drift.report_for(found)
        ts = format_ts(self.clock())
        if self.enforcer.source.name == "state" and self.state is not None:
            results = await self._on_state_thread(
                lambda: drift.apply(self.state, report, actor=self.actor, ts=ts, webhook=self.webhook))
            self.enforcer.refresh()
            return results[0].outcome if results else "alerted"
        outcome = "suspended on this replica" if found.response == "suspend" else "alerted"
        cluster, namespace = self._writer(), self.enforcer.snapshot.namespace
        if cluster is not None and namespace is not None and found.response in ("suspend", "throttle"):
            written = await cluster.hold(namespace, found.agent, hold_for(found, self.replica, ts))
            outcome = written if outcome == "alerted" else f"{outcome}; {written}"
        self._record(chain.Entry(DRIFT_DETECTED, found.agent, self.actor,
                                 {"report_id": found.report_id, **found.to_dict(), "applied": outcome}, ts))
        return outcome

    # ------------------------------------------------------------------ metrics

    def write_health(self) -> None:
        """Leave this replica's per-agent health where `arxctl gateway health` reads it."""
        write_report(self.log.directory, self.health.report())

    async def report_to_cluster(self, *, health: bool) -> list[str]:
        """Retry the holds whose write failed and, with `health`, write the changed per-agent health into the
        Agent statuses (the report is taken here, on the event loop that counts); returns what was retried."""
        if self.cluster is None:
            return []
        retried = await self.cluster.retry_holds()
        snapshot = self.enforcer.snapshot
        if health and snapshot.namespace is not None:
            await self.cluster.health(snapshot.namespace, self.health.report(), frozenset(snapshot.agents))
        return retried

    def metrics(self) -> str:
        snapshot = self.enforcer.snapshot
        stats = self.enforcer.stats
        extra: list[tuple[str, str, str, float | int, Mapping[str, str]]] = [
            ("arx_gateway_state_ok", "gauge", "1 when a valid enforcement state is loaded, else 0 (every call "
             "denied).", 0 if snapshot.error else 1, {"source": snapshot.source}),
            ("arx_gateway_state_info", "gauge", "The enforced state revision.", 1, {"revision": snapshot.revision}),
            ("arx_gateway_state_age_seconds", "gauge", "Seconds since the enforced state was loaded.",
             round(time.monotonic() - snapshot.loaded_monotonic, 3), {}),
            ("arx_gateway_state_reload_ms", "gauge", "How long the last state reload took.", stats.last_ms, {}),
            ("arx_gateway_state_reloads_total", "counter", "State reloads since start.", stats.reloads, {}),
            ("arx_gateway_state_reload_errors_total", "counter", "State reloads that failed (every call denied "
             "until the next good one).", stats.errors, {}),
            ("arx_gateway_requests_total", "counter", "Requests received since start.", self.counters.requests, {}),
            ("arx_gateway_executed_total", "counter", "Calls made downstream since start.",
             self.counters.executed, {}),
            ("arx_gateway_audit_failures_total", "counter", "Audit records that could not be written.",
             self.counters.audit_failures, {}),
            ("arx_gateway_drift_responses_total", "counter", "Live drift responses applied (alert, throttle or "
             "suspend).", self.counters.drift_applied, {}),
            ("arx_gateway_audit_records", "gauge", "Records in this replica's chain.", self.log.size(),
             {"log": self.log.log_id}),
        ]
        if self.cluster is not None:
            written = self.cluster.stats
            extra += [
                ("arx_gateway_status_writes_total", "counter", "Agent status writes (holds and health) that landed.",
                 written.holds + written.health, {}),
                ("arx_gateway_status_write_errors_total", "counter", "Agent status writes the API server refused or "
                 "that timed out.", written.errors, {}),
                ("arx_gateway_status_conflicts_total", "counter", "Agent status writes retried after a 409.",
                 written.conflicts, {}),
                ("arx_gateway_status_holds_pending", "gauge", "Holds waiting to be written again (the replica "
                 "denies those agents meanwhile).", self.cluster.pending, {}),
            ]
        return self.health.prometheus(extra)
