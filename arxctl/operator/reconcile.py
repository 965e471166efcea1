"""Pure reconcile functions: (observed cluster state, registry view, time) -> (desired objects, status, records).

Nothing here performs I/O. The controller observes a namespace, registers what is valid, asks `plan_namespace`
what the namespace should look like, and applies the plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from arxctl.canonical import digest
from arxctl.clock import format_ts, parse_ts
from arxctl.diagnostics import Diagnostic, Severity
from arxctl.durations import parse_duration
from arxctl.policy.bundle import (
    BUNDLE_KEY,
    CONFIGMAP_NAME,
    agent_entry,
    build_bundle,
    bundle_bytes,
    resource_doc,
)
from arxctl.resources.validation import validate_documents
from arxctl.resources.yamlio import Document

GROUP, VERSION = "arx.dev", "v1alpha1"
FINALIZER = "arx.dev/decommission"
AGENT_LABEL = "arx.dev/agent"
RETENTION_ANNOTATION = "arx.dev/retention-class"
REVISION_ANNOTATION = "arx.dev/revision"
POLICY_REVISION_ANNOTATION = "arx.dev/policy-revision"
MANAGED_LABELS = {"app.kubernetes.io/managed-by": "arx-operator", "app.kubernetes.io/part-of": "arxctl"}
ACTIVE, SUSPENDED, DECOMMISSIONED = "active", "suspended", "decommissioned"
PENDING, APPROVED, DENIED, EXPIRED, REVOKED = "Pending", "Approved", "Denied", "Expired", "Revoked"
LIVE_GRANT_PHASES = frozenset({PENDING, APPROVED})
SUSPENSION, REACTIVATION, GATEWAY = "suspension", "reactivation", "gateway"
SUSPEND, THROTTLE, REACTIVATE = "suspend", "throttle", "reactivate"
KINDS = ("Agent", "Policy", "ConnectorCatalog", "Grant")
_REGISTERED_KINDS = ("Agent", "Policy", "ConnectorCatalog")

Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Observed:
    """What the controller read from one namespace: the four resource kinds and the current bundle ConfigMap."""

    namespace: str
    agents: Sequence[Obj] = ()
    policies: Sequence[Obj] = ()
    catalogs: Sequence[Obj] = ()
    grants: Sequence[Obj] = ()
    configmap: Obj | None = None

    def of(self, kind: str) -> Sequence[Obj]:
        return {"Agent": self.agents, "Policy": self.policies, "ConnectorCatalog": self.catalogs,
                "Grant": self.grants}[kind]


@dataclass(frozen=True, slots=True)
class Checked:
    """Validation of a namespace: the valid resources (bundle form) and the problems of the others."""

    valid: Mapping[tuple[str, str], Obj]
    problems: Mapping[tuple[str, str], tuple[Diagnostic, ...]]


@dataclass(frozen=True, slots=True)
class Registered:
    """An object's head in the operator's registry: the last valid version, which is the one enforced."""

    version: int
    digest: str
    status: str
    doc: Obj
    throttled: bool = False
    suspension: Obj | None = None
    throttle: Obj | None = None


@dataclass(frozen=True, slots=True)
class RegistryView:
    """What the operator's store says about a namespace: registry heads, revoked handles, recorded marks."""

    heads: Mapping[tuple[str, str], Registered] = field(default_factory=dict)
    revoked_handles: tuple[str, ...] = ()
    marks: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Event:
    """A Kubernetes Event to post about an object."""

    kind: str
    name: str
    uid: str
    reason: str
    message: str
    type: str = "Normal"


@dataclass(frozen=True, slots=True)
class Record:
    """A chain record to append, and the mark that says it was recorded (so a restart never records it twice)."""

    type: str
    agent: str | None
    body: Obj
    mark: str
    mark_value: str


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A status to merge into an object. A Grant's change is recomputed (`grant_change`) from the object as it is
    when written, with the `problems` and `agent` status it was planned with. `clear` names status keys to remove,
    each only while it still holds the content (digest) that was handled."""

    kind: str
    name: str
    status: Obj
    problems: tuple[Diagnostic, ...] = ()
    agent: str | None = None
    clear: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything one reconcile of a namespace should change (grant Events come from writing their status)."""

    bundle: Obj
    configmap: Obj | None
    records: tuple[Record, ...]
    statuses: tuple[StatusChange, ...]
    events: tuple[Event, ...]
    decommission: tuple[str, ...]
    next_deadline: datetime | None


@dataclass(frozen=True, slots=True)
class Hold:
    """A lifecycle change asked for in an Agent's status: a hold (`status.suspension`, written by a gateway replica
    on live drift, or by an admin), or an admin's `status.reactivation`. `marks` say which content was handled."""

    agent: str
    uid: str
    action: str
    actor: str
    reason: str
    detail: Obj
    marks: tuple[tuple[str, str], ...]


def name_of(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"]["name"])


def deleting(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def decommission_requested(obj: Mapping[str, Any]) -> bool:
    """Deleted, or `spec.lifecycle: decommissioned`."""
    return deleting(obj) or (obj.get("spec") or {}).get("lifecycle") == DECOMMISSIONED


def check(observed: Observed) -> Checked:
    """Schema and semantic validation of every object of the namespace, as `arxctl validate` does it."""
    docs: list[Document] = []
    keys: dict[str, tuple[str, str]] = {}
    for kind in KINDS:
        for obj in observed.of(kind):
            path = f"{observed.namespace}/{kind}/{name_of(obj)}"
            keys[path] = (kind, name_of(obj))
            docs.append(Document(path, 0, resource_doc(obj), None))
    resources, diagnostics, _ = validate_documents(docs)
    problems: dict[tuple[str, str], list[Diagnostic]] = {}
    for diagnostic in diagnostics:
        if diagnostic.severity == Severity.error and diagnostic.path in keys:
            problems.setdefault(keys[diagnostic.path], []).append(diagnostic)
    return Checked({(r.kind, r.name): r.doc for r in resources},
                   {key: tuple(found) for key, found in problems.items()})


def to_register(observed: Observed, checked: Checked, view: RegistryView) -> list[Obj]:
    """Valid Agents, Policies and ConnectorCatalogs whose content differs from their registry head.

    An agent being decommissioned, or already decommissioned, takes no new version.
    """
    out = []
    for kind in _REGISTERED_KINDS:
        for obj in observed.of(kind):
            key = (kind, name_of(obj))
            doc = checked.valid.get(key)
            head = view.heads.get(key)
            if doc is None or (head is not None and head.digest == digest(doc)):
                continue
            if kind == "Agent" and (deleting(obj) or (head is not None and head.status == DECOMMISSIONED)):
                continue
            out.append(doc)
    return out


def summarize(problems: Sequence[Diagnostic]) -> str:
    """The first problem as `RULE json.path: message`, and how many more there are."""
    first = problems[0]
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{first.rule} {first.json_path}: {first.message}{more}"


def _condition(kind: str, status: bool, reason: str, message: str, generation: int | None,
               previous: Mapping[str, Any] | None, now: datetime) -> Obj:
    value = "True" if status else "False"
    since = format_ts(now)
    if previous is not None:
        for item in previous.get("conditions") or []:
            if item.get("type") == kind and item.get("status") == value and item.get("lastTransitionTime"):
                since = item["lastTransitionTime"]
    return {"type": kind, "status": value, "reason": reason, "message": message, "observedGeneration": generation,
            "lastTransitionTime": since}


def suspension_mark(name: str) -> str:
    return f"Agent/{name}/{SUSPENSION}"


def reactivation_mark(name: str) -> str:
    return f"Agent/{name}/{REACTIVATION}"


def held(value: Any) -> bool:
    """Whether a `status.suspension` asks for a hold: `suspended: true` or `throttled: true`."""
    return isinstance(value, dict) and (value.get("suspended") is True or value.get("throttled") is True)


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def lifecycle_changes(observed: Observed, view: RegistryView) -> list[Hold]:
    """The holds and reactivations written into Agent statuses that the store has not handled yet.

    A reactivation is handled before a hold, and it lifts the hold shown next to it. A hold stays in the store until
    a reactivation: removing `status.suspension` lifts nothing (there is no auto-resume). A new hold forgets the
    last reactivation, so the same words may lift the next one. Agents that are not registered, or are being
    decommissioned, are left alone.
    """
    out = []
    for obj in sorted(observed.agents, key=name_of):
        name = name_of(obj)
        head = view.heads.get(("Agent", name))
        if head is None or head.status == DECOMMISSIONED or decommission_requested(obj):
            continue
        status = obj.get("status") or {}
        uid = str((obj.get("metadata") or {}).get("uid", ""))
        reactivation, suspension = status.get(REACTIVATION), status.get(SUSPENSION)
        if isinstance(reactivation, dict) and view.marks.get(reactivation_mark(name)) != digest(reactivation):
            marks = [(reactivation_mark(name), digest(reactivation))]
            if isinstance(suspension, dict):
                marks.append((suspension_mark(name), digest(suspension)))
            out.append(Hold(name, uid, REACTIVATE, _text(reactivation.get("by")), _text(reactivation.get("reason")),
                            dict(reactivation), tuple(marks)))
        elif held(suspension) and view.marks.get(suspension_mark(name)) != digest(suspension):
            action = SUSPEND if suspension.get("suspended") is True else THROTTLE
            marks = [(suspension_mark(name), digest(suspension))]
            if REACTIVATION not in status:
                marks.append((reactivation_mark(name), ""))
            out.append(Hold(name, uid, action, _text(suspension.get("source")) or "unknown",
                            _text(suspension.get("reason")) or "status.suspension gave no reason", dict(suspension),
                            tuple(marks)))
    return out


def hold_event(hold: Hold, outcome: str) -> Event:
    """The Event that says what a hold or reactivation did."""
    if hold.action == REACTIVATE:
        reason = "Reactivated" if outcome.startswith("reactivated") else "ReactivationRefused"
        return Event("Agent", hold.agent, hold.uid, reason, f"{outcome} (by {hold.actor or 'nobody'}: "
                                                            f"{hold.reason or 'no reason'})",
                     "Normal" if reason == "Reactivated" else "Warning")
    return Event("Agent", hold.agent, hold.uid, "Suspended" if hold.action == SUSPEND else "Throttled",
                 f"{outcome} (by {hold.actor}: {hold.reason})", "Warning")


def agent_state(obj: Mapping[str, Any], head: Registered | None) -> str:
    """The agent's status as the engine must see it: decommissioned as soon as decommissioning is asked for."""
    if decommission_requested(obj) or (head is not None and head.status == DECOMMISSIONED):
        return DECOMMISSIONED
    return head.status if head is not None else ACTIVE


def _by(info: Mapping[str, Any] | None) -> str:
    """`by ACTOR at TS: REASON` for a suspension or throttle held in the store."""
    info = info or {}
    return f"by {info.get('by') or 'unknown'} at {info.get('at') or 'unknown'}: {info.get('reason') or 'no reason'}"


def agent_status(obj: Mapping[str, Any], problems: Sequence[Diagnostic], head: Registered | None,
                 now: datetime) -> Obj:
    """The Agent's status: phase, the enforced version and digest, and the Ready, Suspended and Decommissioned
    conditions with observedGeneration."""
    current = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation")
    state = agent_state(obj, head)
    stored = head is not None and head.status == DECOMMISSIONED
    if state == DECOMMISSIONED:
        phase = "Decommissioned" if stored else "Decommissioning"
        ready = (False, "Decommissioned", "decommissioned: every call is denied" if stored
                 else "decommissioning: every call is denied while credentials, grants and handles are revoked")
    elif head is None:
        phase = "Invalid"
        ready = (False, "Invalid", summarize(problems) if problems else "not registered yet")
    elif problems:
        phase = "Suspended" if state == SUSPENDED else "Active"
        ready = (False, "InvalidUpdate", f"version {head.version} stays in force; the new spec is invalid: "
                                         f"{summarize(problems)}")
    elif state == SUSPENDED:
        phase = "Suspended"
        ready = (False, "Suspended", "suspended: every call is denied")
    else:
        phase = "Active"
        throttle = f"; throttled {_by(head.throttle)}" if head.throttled and head.throttle else ""
        ready = (True, "Enforced", f"version {head.version} is in the enforcement bundle{throttle}")
    if state == SUSPENDED:
        info = head.suspension if head is not None else None
        suspended = ("LiveDrift" if info and info.get("source") == "drift" else "Suspended",
                     f"suspended {_by(info)}; only an admin's status.reactivation lifts it" if info
                     else "suspended in the registry")
    else:
        suspended = ("NotSuspended", "")
    status: Obj = {
        "phase": phase,
        "version": head.version if head is not None else None,
        "digest": head.digest if head is not None else None,
        "throttled": bool(head is not None and head.throttled),
        "observedGeneration": generation,
        "conditions": [
            _condition("Ready", *ready, generation, current, now),
            _condition("Suspended", state == SUSPENDED, *suspended, generation, current, now),
            _condition("Decommissioned", state == DECOMMISSIONED,
                       "Decommissioned" if stored else ("Decommissioning" if state == DECOMMISSIONED else "Active"),
                       "record sealed" if stored else "", generation, current, now),
        ],
    }
    return status


def resource_status(obj: Mapping[str, Any], problems: Sequence[Diagnostic], head: Registered | None,
                    now: datetime) -> Obj:
    """A Policy's status: the enforced revision (its content digest) and version, and a Ready condition."""
    current = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation")
    if head is None:
        phase, ready = "Invalid", (False, "Invalid", summarize(problems) if problems else "not registered yet")
    elif problems:
        phase, ready = "Active", (False, "InvalidUpdate", f"version {head.version} stays in force; the new spec "
                                                          f"is invalid: {summarize(problems)}")
    else:
        phase, ready = "Active", (True, "Enforced", f"version {head.version} is in the enforcement bundle")
    return {
        "phase": phase,
        "revision": head.digest if head is not None else None,
        "version": head.version if head is not None else None,
        "observedGeneration": generation,
        "conditions": [_condition("Ready", *ready, generation, current, now)],
    }


def grant_times(obj: Mapping[str, Any], now: datetime) -> tuple[str | None, str | None]:
    """(approvedAt, expiresAt) of an approved grant: approval when the approver said, but never later than now, and
    expiry always approval + ttl (an expiresAt written by anyone else is corrected, so no grant outlives its ttl)."""
    status = obj.get("status") or {}
    if status.get("phase") != APPROVED:
        return status.get("approvedAt"), status.get("expiresAt")
    given = status.get("approvedAt")
    approved = min(parse_ts(given), now) if given else now
    return format_ts(approved), format_ts(approved + parse_duration(obj["spec"]["ttl"]))


def grant_change(obj: Mapping[str, Any], problems: Sequence[Diagnostic], agent: str | None,
                 now: datetime) -> tuple[Obj | None, Event | None]:
    """The status a Grant should move to, and the Event that says so; (None, None) when it is right already.

    `agent` is the engine status of the grant's agent (None when there is no such agent). The operator never
    approves: Approved comes only from a status write by an approver; the operator fills in the times, expires
    the grant at approvedAt + ttl, and revokes the live grants of a decommissioned agent.
    """
    status = obj.get("status") or {}
    phase = status.get("phase")
    name, uid = name_of(obj), str((obj.get("metadata") or {}).get("uid", ""))
    if phase in LIVE_GRANT_PHASES and agent == DECOMMISSIONED:
        reason = f"agent '{obj['spec']['agent']}' was decommissioned"
        return ({"phase": REVOKED, "reason": reason},
                Event("Grant", name, uid, "Revoked", f"grant revoked: {reason}", "Warning"))
    if phase is None:
        reason = summarize(problems) if problems else "waiting for an approver"
        return {"phase": PENDING, "reason": reason}, None
    if phase != APPROVED:
        return None, None
    approved, expires = grant_times(obj, now)
    assert approved is not None and expires is not None
    if now >= parse_ts(expires):
        reason = f"ttl {obj['spec']['ttl']} elapsed at {expires}"
        return ({"phase": EXPIRED, "approvedAt": approved, "expiresAt": expires, "reason": reason},
                Event("Grant", name, uid, "Expired", f"grant expired and left the enforcement bundle: {reason}"))
    wanted = {"approvedAt": approved, "expiresAt": expires,
              "reason": (f"not enforced: {summarize(problems)}" if problems else f"active until {expires}")}
    if all(status.get(k) == v for k, v in wanted.items()):
        return None, None
    return wanted, None


def grant_record(obj: Mapping[str, Any], status: Mapping[str, Any], marks: Mapping[str, str]) -> Record | None:
    """The chain record for the grant's phase, unless that phase was recorded already."""
    phase = status.get("phase")
    uid = str((obj.get("metadata") or {}).get("uid", ""))
    mark = f"Grant/{name_of(obj)}/{uid}"
    if phase is None or marks.get(mark) == phase:
        return None
    spec = obj["spec"]
    kinds = {PENDING: "grant.requested", APPROVED: "grant.approved", DENIED: "grant.denied", EXPIRED: "grant.expired",
             REVOKED: "grant.revoked"}
    body = {"grant": name_of(obj), "uid": uid, "actions": list(spec.get("actions") or []),
            "scope": dict(spec.get("scope") or {}), "ttl": spec.get("ttl"), "requested_by": spec.get("requestedBy"),
            "request_reason": spec.get("reason"), "phase": phase,
            **{k: status[v] for k, v in (("approved_by", "approvedBy"), ("approved_at", "approvedAt"),
                                         ("expires_at", "expiresAt"), ("reason", "reason")) if status.get(v)}}
    return Record(kinds[phase], str(spec.get("agent")), body, mark, str(phase))


def bundle_grant(obj: Mapping[str, Any], status: Mapping[str, Any]) -> Obj:
    spec = obj["spec"]
    return {"id": name_of(obj), "agent": spec["agent"], "actions": list(spec["actions"]),
            "scope": dict(spec.get("scope") or {}), "phase": status.get("phase"),
            "approved_at": status.get("approvedAt"), "expires_at": status.get("expiresAt")}


def bundle_configmap(namespace: str, bundle: Mapping[str, Any]) -> Obj:
    """The ConfigMap that carries a namespace's bundle (server-side applied by the operator)."""
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": CONFIGMAP_NAME, "namespace": namespace, "labels": dict(MANAGED_LABELS),
                     "annotations": {REVISION_ANNOTATION: bundle["revision"],
                                     POLICY_REVISION_ANNOTATION: bundle["policy_revision"]}},
        "data": {BUNDLE_KEY: bundle_bytes(bundle).decode("utf-8")},
    }


def configmap_revision(configmap: Mapping[str, Any] | None) -> str | None:
    if configmap is None:
        return None
    return ((configmap.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION)


def changed(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """True when a key of `desired` differs in `current` (keys the operator does not manage are left alone)."""
    current = current or {}
    return any(current.get(k) != v for k, v in desired.items())


def handled(obj: Mapping[str, Any], head: Registered | None, marks: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Status keys to remove: a reactivation the store has handled, and a handled hold no longer in force."""
    name, status = name_of(obj), obj.get("status") or {}
    out = []
    reactivation, suspension = status.get(REACTIVATION), status.get(SUSPENSION)
    if isinstance(reactivation, dict) and marks.get(reactivation_mark(name)) == digest(reactivation):
        out.append((REACTIVATION, digest(reactivation)))
    in_force = head is not None and (head.status == SUSPENDED or head.throttled)
    if isinstance(suspension, dict) and not in_force and marks.get(suspension_mark(name)) == digest(suspension):
        out.append((SUSPENSION, digest(suspension)))
    return tuple(out)


def trigger_key(obj: Mapping[str, Any]) -> str:
    """What a watch event must change for a reconcile to be worth it: anything but the resourceVersion, the
    managed fields and the gateways' health reports (`status.gateway`)."""
    metadata = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in ("resourceVersion", "managedFields")}
    status = {k: v for k, v in (obj.get("status") or {}).items() if k != GATEWAY}
    return digest({**obj, "metadata": metadata, "status": status})


def plan_namespace(observed: Observed, checked: Checked, view: RegistryView, now: datetime) -> Plan:
    """What one namespace should look like: the bundle (and its ConfigMap when its revision changed), statuses,
    grant transitions with their Events and records, agents to decommission, and when to look again."""
    heads = view.heads
    records: list[Record] = []
    statuses: list[StatusChange] = []
    events: list[Event] = []
    agents: list[Obj] = []
    engine_status: dict[str, str] = {}
    decommission: list[str] = []
    for obj in sorted(observed.agents, key=name_of):
        name = name_of(obj)
        head = heads.get(("Agent", name))
        problems = checked.problems.get(("Agent", name), ())
        state = agent_state(obj, head)
        engine_status[name] = state
        if head is not None:
            agents.append(agent_entry(head.doc, status=state, throttled=head.throttled, version=head.version,
                                      digest=head.digest))
        if state == DECOMMISSIONED and (head is None or head.status != DECOMMISSIONED) and not deleting(obj):
            decommission.append(name)
        if not deleting(obj):
            desired = agent_status(obj, problems, head, now)
            clear = handled(obj, head, view.marks)
            if changed(obj.get("status"), desired) or clear:
                statuses.append(StatusChange("Agent", name, desired, clear=clear))
        records.extend(_rejection(obj, "Agent", problems, view.marks, events))
    policies: list[Obj] = []
    for kind, out in (("Policy", policies), ("ConnectorCatalog", None)):
        for obj in sorted(observed.of(kind), key=name_of):
            name = name_of(obj)
            head = heads.get((kind, name))
            problems = checked.problems.get((kind, name), ())
            if out is not None and head is not None:
                out.append(head.doc)
            if kind == "Policy":
                desired = resource_status(obj, problems, head, now)
                if changed(obj.get("status"), desired):
                    statuses.append(StatusChange(kind, name, desired))
            records.extend(_rejection(obj, kind, problems, view.marks, events))
    catalogs = [heads[("ConnectorCatalog", name_of(c))].doc for c in sorted(observed.catalogs, key=name_of)
                if ("ConnectorCatalog", name_of(c)) in heads]
    grants: list[Obj] = []
    deadline: datetime | None = None
    for obj in sorted(observed.grants, key=name_of):
        name = name_of(obj)
        problems = checked.problems.get(("Grant", name), ())
        agent = engine_status.get(str(obj["spec"].get("agent")))
        change, _ = grant_change(obj, problems, agent, now)
        status = {**(obj.get("status") or {}), **(change or {})}
        if change is not None:
            statuses.append(StatusChange("Grant", name, change, tuple(problems), agent))
        record = grant_record(obj, status, view.marks)
        if record is not None:
            records.append(record)
        if status.get("phase") == APPROVED and not problems:
            grants.append(bundle_grant(obj, status))
            expires = parse_ts(status["expiresAt"])
            deadline = expires if deadline is None or expires < deadline else deadline
    bundle = build_bundle(namespace=observed.namespace, agents=agents, policies=policies, catalogs=catalogs,
                          grants=grants, revoked_handles=list(view.revoked_handles), generated=format_ts(now))
    configmap = None
    if configmap_revision(observed.configmap) != bundle["revision"]:
        configmap = bundle_configmap(observed.namespace, bundle)
    if view.marks.get("bundle") != bundle["revision"]:
        records.append(Record("bundle.published", None, {
            "namespace": observed.namespace, "revision": bundle["revision"],
            "policy_revision": bundle["policy_revision"],
            "agents": {a["name"]: {"status": a["status"], "version": a["version"]} for a in bundle["agents"]},
            "policies": [name_of(p) for p in bundle["policies"]], "catalogs": [name_of(c) for c in bundle["catalogs"]],
            "grants": [g["id"] for g in bundle["grants"]], "revoked_handles": bundle["revoked_handles"],
            "previous": view.marks.get("bundle"),
        }, "bundle", bundle["revision"]))
    return Plan(bundle, configmap, tuple(records), tuple(statuses), tuple(events), tuple(decommission), deadline)


def _rejection(obj: Mapping[str, Any], kind: str, problems: Sequence[Diagnostic], marks: Mapping[str, str],
               events: list[Event]) -> list[Record]:
    """A `resource.rejected` record and a Warning Event, once per invalid content."""
    if not problems:
        return []
    doc = resource_doc(obj)
    content = digest(doc)
    mark = f"{kind}/{name_of(obj)}/rejected"
    if marks.get(mark) == content:
        return []
    message = summarize(problems)
    events.append(Event(kind, name_of(obj), str(obj["metadata"].get("uid", "")), "Invalid", message, "Warning"))
    return [Record("resource.rejected", name_of(obj) if kind == "Agent" else None, {
        "kind": kind, "name": name_of(obj), "digest": content,
        "diagnostics": [{"rule": d.rule, "json_path": d.json_path, "message": d.message} for d in problems],
    }, mark, content)]


def decommission_summary(*, at: str, reason: str, retention_class: str, secrets: Sequence[str],
                         grants: Sequence[str], handles: Sequence[str], record_seq: int | None,
                         seal_seq: int | None) -> Obj:
    """What decommissioning did, as shown in the Agent's `status.decommission`."""
    return {"at": at, "reason": reason, "retentionClass": retention_class, "secretsDeleted": sorted(secrets),
            "grantsRevoked": sorted(grants), "handlesRevoked": sorted(handles), "recordSeq": record_seq,
            "sealSeq": seal_seq}


def retention_class(obj: Mapping[str, Any], default: str) -> str:
    """The retention class for an agent's sealed record: its `arx.dev/retention-class` annotation, else the default."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(RETENTION_ANNOTATION) or default)
