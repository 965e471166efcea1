"""`arxctl assess`: the fleet's stage (Stuck, Operating, Scaling) and the concrete items missing for the next one.

Read-only: it reads the registry, the lifecycle tables, the chain and the project config, and never writes.
Operating needs the first three pillars in use (registered owned agents, scored and recorded calls, approval
gates that reach real approvers, drift checked, suspensions investigated); Scaling adds the hygiene that lets
it grow (signed checkpoints on a witness, simulated policies, expiring grants, backup owners, declared rates,
a signed webhook for critical drift).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from arxctl.clock import format_ts, parse_ts

STUCK, OPERATING, SCALING = "Stuck", "Operating", "Scaling"
STAGES = (STUCK, OPERATING, SCALING)
STAGE_NUMBERS = {STUCK: "02", OPERATING: "03", SCALING: "04"}
DRIFT_STALE = timedelta(days=7)
HOLD_STALE = timedelta(hours=72)
WITNESS_STALE = timedelta(hours=24)
BACKUP_OWNER = "arx.dev/backup-owner"
PLACEHOLDERS = frozenset({"unknown", "tbd", "todo", "n/a", "na", "none", "owner", "nobody", "noreply", "no-reply"})
SIMULATED = "policy.simulated"
DRIFT_CHECKED = "drift.checked"
WEBHOOK_DELIVERY = "webhook.delivery"
DECISION = "decision"


@dataclass(frozen=True, slots=True)
class Item:
    """One concrete thing missing, and the command that fixes it."""

    subject: str
    detail: str
    fix: str

    def to_dict(self) -> dict[str, str]:
        return {"subject": self.subject, "detail": self.detail, "fix": self.fix}


@dataclass(frozen=True, slots=True)
class Check:
    """One requirement of a stage: met, or the items that are missing."""

    id: str
    stage: str
    title: str
    summary: str
    items: tuple[Item, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.items

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "stage": self.stage, "title": self.title, "ok": self.ok, "summary": self.summary,
                "items": [i.to_dict() for i in self.items]}


@dataclass(frozen=True, slots=True)
class Assessment:
    """The stage reached and every check behind it."""

    ts: datetime
    checks: tuple[Check, ...]
    facts: Mapping[str, Any] = field(default_factory=dict)

    @property
    def stage(self) -> str:
        if any(not c.ok for c in self.checks if c.stage == OPERATING):
            return STUCK
        if any(not c.ok for c in self.checks if c.stage == SCALING):
            return OPERATING
        return SCALING

    @property
    def next_stage(self) -> str | None:
        index = STAGES.index(self.stage)
        return STAGES[index + 1] if index + 1 < len(STAGES) else None

    def missing(self) -> list[tuple[Check, Item]]:
        """The items standing between this stage and the next one, in check order."""
        goal = self.next_stage
        return [(c, i) for c in self.checks if c.stage == goal for i in c.items]

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage, "stage_number": STAGE_NUMBERS[self.stage], "next": self.next_stage,
            "ts": format_ts(self.ts), "missing": len(self.missing()), "facts": dict(self.facts),
            "checks": [c.to_dict() for c in self.checks],
        }


def at_least(stage: str, floor: str) -> bool:
    return STAGES.index(stage) >= STAGES.index(floor)


@dataclass(slots=True)
class _Facts:
    """What the checks read, gathered once."""

    agents: list[tuple[Any, Any]]
    policies: list[Any]
    counts: dict[str, int]
    last_ts: dict[str, str]
    chain_size: int
    chain_last_ts: str | None


def _chain_facts(conn: sqlite3.Connection) -> tuple[dict[str, int], dict[str, str], int, str | None]:
    """Record counts and the newest record's ts per type, and the chain's size and newest ts."""
    counts: dict[str, int] = {}
    last_seq: dict[str, int] = {}
    for type_, count, seq in conn.execute("SELECT type, COUNT(*), MAX(seq) FROM chain GROUP BY type"):
        counts[type_] = count
        last_seq[type_] = seq
    last_ts = {t: conn.execute("SELECT ts FROM chain WHERE seq = ?", (s,)).fetchone()[0] for t, s in last_seq.items()}
    row = conn.execute("SELECT seq, ts FROM chain ORDER BY seq DESC LIMIT 1").fetchone()
    return counts, last_ts, (row[0] if row else 0), (row[1] if row else None)


def _bodies(conn: sqlite3.Connection, type_: str) -> Iterable[tuple[int, str, dict[str, Any]]]:
    for seq, ts, line in conn.execute("SELECT seq, ts, line FROM chain WHERE type = ? ORDER BY seq", (type_,)):
        yield seq, ts, orjson.loads(line)["body"]


def assess(store: Any, config: Any, *, now: datetime, config_hint: str = "<state>/config.yaml") -> Assessment:
    """Assess the fleet in `store` (None when nothing was ever registered) under the project `config`.

    `config_hint` names the config file in fixes when the config was not read from a file.
    """
    from arxctl.registry import resources as registry

    if store is None:
        facts = _Facts([], [], {}, {}, 0, None)
        conn = None
    else:
        conn = store.conn
        counts, last_ts, size, newest = _chain_facts(conn)
        facts = _Facts(registry.current(store, "Agent"), registry.current(store, "Policy"), counts, last_ts, size,
                       newest)
    live = [(h, v) for h, v in facts.agents if h.status != "decommissioned"]
    config_where = getattr(config, "path", None) or config_hint
    checks = [
        _registry(live),
        _owners(live),
        _policies(facts),
        _decisions(facts),
        _approvals(facts, config, config_where),
        _drift(facts, now),
        _holds(conn, live, config, config_where, now),
        _signing_key(conn),
        _witness(conn, facts, now),
        _simulation(conn, facts),
        _grants(conn, now),
        _backup_owners(live),
        _rates(live),
        _webhook(conn, config, config_where),
    ]
    summary = {
        "agents": len(live), "decommissioned": len(facts.agents) - len(live), "policies": len(facts.policies),
        "chain_records": facts.chain_size, "decisions": facts.counts.get(DECISION, 0),
    }
    return Assessment(now, tuple(checks), summary)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _registry(live: list[tuple[Any, Any]]) -> Check:
    title = "Agents are registered with an owner and a declared connector graph"
    if live:
        return Check("registry", OPERATING, title, f"{_plural(len(live), 'agent')} registered")
    return Check("registry", OPERATING, title, "no agent is registered", (
        Item("registry", "no agent is registered: nobody can say what is running",
             'arxctl register examples/manifests/ --reason "initial import"'),))


def _owners(live: list[tuple[Any, Any]]) -> Check:
    items = []
    for head, version in live:
        owner = version.doc["spec"].get("owner") or {}
        name = str(owner.get("name", "")).strip()
        email = str(owner.get("email", "")).strip()
        fix = f"set spec.owner in the manifest of {head.name}, then `arxctl register <manifest>`"
        local = email.partition("@")[0].lower()
        if name.lower() in PLACEHOLDERS or local in PLACEHOLDERS:
            items.append(Item(head.name, f"owner '{name} <{email}>' is a placeholder, not a person", fix))
        elif not str(owner.get("team", "")).strip():
            items.append(Item(head.name, f"owner {name} <{email}> has no team: nobody to escalate to",
                              fix.replace("spec.owner", "spec.owner.team")))
    return Check("owners", OPERATING, "Every agent has a named owner with a team",
                 f"{_plural(len(live) - len(items), 'agent')} with a named owner and team", tuple(items))


def _policies(facts: _Facts) -> Check:
    title = "An enforced policy set is registered"
    if facts.policies:
        n = len(facts.policies)
        return Check("policies", OPERATING, title, f"{n} {'policy' if n == 1 else 'policies'} enforced")
    return Check("policies", OPERATING, title, "no policy is registered", (
        Item("policies", "no Policy is registered: only the default thresholds (60/80) apply",
             "arxctl register examples/policies/"),))


def _decisions(facts: _Facts) -> Check:
    title = "Connector calls are scored and recorded in the audit chain"
    n = facts.counts.get(DECISION, 0)
    if n:
        return Check("decisions", OPERATING, title, f"{_plural(n, 'decision')} recorded")
    return Check("decisions", OPERATING, title, "no decision is recorded", (
        Item("decisions", "the chain holds no decision records: calls are not scored on the record",
             "arxctl decide --agent NAME --action ACTION --record (or route calls through the gateway)"),))


def _approval_groups(policies: list[Any]) -> list[tuple[str, str, str | None]]:
    """(policy, rule, approver group) for every approvalRequired rule."""
    out = []
    for _, version in policies:
        for rule in version.doc["spec"].get("rules") or []:
            ask = (rule.get("then") or {}).get("approvalRequired")
            if isinstance(ask, dict):
                out.append((version.name, rule.get("name", "?"), (ask.get("approvers") or {}).get("group")))
    return out


def _approvals(facts: _Facts, config: Any, where: str) -> Check:
    title = "Approval gates reach real approvers"
    gates = _approval_groups(facts.policies)
    if not gates:
        return Check("approvals", OPERATING, title, "no approval gate", (
            Item("approvals", "no policy rule requires approval: every call is either allowed or denied",
                 "add a rule with `then: {approvalRequired: {approvers: {group: G}, timeout: 4h}}`, then "
                 "`arxctl register <policy>`"),))
    groups: Mapping[str, frozenset[str]] = getattr(config, "groups", {}) or {}
    default = getattr(config, "default_group", None)
    items = []
    for policy, rule, group in gates:
        name = group or default
        if name is None:
            items.append(Item(f"{policy}/{rule}", "names no approver group and the config sets no "
                              "approvals.default_group", f"set approvals.default_group in {where}"))
        elif not groups.get(name):
            items.append(Item(f"{policy}/{rule}", f"approver group '{name}' has no members in {where}: "
                              "its approvals can only time out", f"add `groups: {{{name}: [USER, ...]}}` to {where}"))
    return Check("approvals", OPERATING, title,
                 f"{_plural(len(gates) - len(items), 'approval gate')} with approvers", tuple(items))


def _drift(facts: _Facts, now: datetime) -> Check:
    title = "Drift is checked against the declared manifests"
    fix = "arxctl drift check --from-chain --since 7d --apply"
    last = facts.last_ts.get(DRIFT_CHECKED)
    if last is None:
        return Check("drift", OPERATING, title, "drift never checked", (
            Item("drift", "no `drift.checked` record: deviations from the manifests go unnoticed", fix),))
    age = now - parse_ts(last)
    if age > DRIFT_STALE:
        return Check("drift", OPERATING, title, f"last checked {last}", (
            Item("drift", f"last drift check was {last} ({age.days} days ago; at most {DRIFT_STALE.days} allowed)",
                 fix),))
    return Check("drift", OPERATING, title, f"last checked {last}")


def _holds(conn: sqlite3.Connection | None, live: list[tuple[Any, Any]], config: Any, where: str,
           now: datetime) -> Check:
    from arxctl.registry import lifecycle

    title = "Suspended and throttled agents are investigated"
    if conn is None:
        return Check("holds", OPERATING, title, "0 agents on hold")
    items = []
    held = 0
    for head, _ in live:
        status = lifecycle.status(conn, head.name)
        if status.status == lifecycle.SUSPENDED:
            held += 1
            since = status.suspended_at
            if since is not None and now - parse_ts(since) > HOLD_STALE:
                items.append(Item(head.name, f"suspended since {since} by {status.suspended_by} "
                                  f"({status.suspended_source}: {status.suspended_reason}) and never investigated",
                                  f'arxctl agents reactivate {head.name} --as ADMIN --reason "..." or '
                                  f'arxctl decommission {head.name} --reason "..." --retention-class CLASS'))
        elif status.throttled:
            held += 1
            since = status.throttled_at
            if since is not None and now - parse_ts(since) > HOLD_STALE:
                items.append(Item(head.name, f"throttled since {since} by {status.throttled_by} "
                                  f"({status.throttle_source}: {status.throttle_reason}) and never investigated",
                                  f'arxctl agents unthrottle {head.name} --as ADMIN --reason "..."'))
    if held and not getattr(config, "admins", None):
        items.append(Item("admins", f"no admin is listed in {where}: a suspended agent can never be reactivated",
                          f"add `admins: [USER]` to {where}"))
    summary = f"{_plural(held, 'agent')} on hold, none older than {int(HOLD_STALE.total_seconds() // 3600)}h" \
        if not items else f"{_plural(held, 'agent')} on hold"
    return Check("holds", OPERATING, title, summary, tuple(items))


def _signing_key(conn: sqlite3.Connection | None) -> Check:
    from arxctl.chain import keys

    title = "Chain checkpoints are signed"
    found = keys.list_keys(conn) if conn is not None else []
    active = [k for k in found if k.valid_until is None]
    if active:
        return Check("signing-key", SCALING, title, f"signing key {active[-1].key_id} ({active[-1].algorithm})")
    return Check("signing-key", SCALING, title, "no signing key", (
        Item("signing-key", "no active checkpoint signing key: nobody can prove the chain was not rewritten",
             "arxctl keys generate"),))


def _witness(conn: sqlite3.Connection | None, facts: _Facts, now: datetime) -> Check:
    title = "The chain tip is published to a witness"
    fix = "arxctl chain publish --witness s3://BUCKET/arx-witness/ --every 5m"
    row = None
    if conn is not None:
        row = conn.execute(
            "SELECT p.ts, c.size, p.witness FROM chain_published p JOIN chain_checkpoints c ON c.n = p.n "
            "ORDER BY p.n DESC, p.ts DESC LIMIT 1"
        ).fetchone()
    if row is None:
        return Check("witness", SCALING, title, "never published", (
            Item("witness", "no checkpoint was ever published to a witness", fix),))
    ts, size, witness = row
    behind = facts.chain_size - size
    age = now - parse_ts(ts)
    if behind > 0 and age > WITNESS_STALE:
        return Check("witness", SCALING, title, f"last published {ts}", (
            Item("witness", f"{_plural(behind, 'record')} since the last checkpoint published at {ts} "
                 f"({int(age.total_seconds() // 3600)}h ago)", fix),))
    return Check("witness", SCALING, title, f"last published {ts} to {witness}")


def _simulation(conn: sqlite3.Connection | None, facts: _Facts) -> Check:
    from arxctl.policy.compiler import compile_policies

    title = "Policies are simulated against recorded activity before they are enforced"
    fix = "arxctl simulate last-30-days.ndjson.gz --policy policies/ --record"
    runs = list(_bodies(conn, SIMULATED)) if conn is not None else []
    if not runs:
        return Check("simulation", SCALING, title, "never simulated", (
            Item("simulation", "no `policy.simulated` record: the enforced policies were never replayed "
                 "against history", fix),))
    if not facts.policies:
        return Check("simulation", SCALING, title, f"{_plural(len(runs), 'simulation')} recorded")
    current = compile_policies([v.doc for _, v in facts.policies]).revision
    if any(body.get("policy_revision") == current for _, _, body in runs):
        return Check("simulation", SCALING, title, f"enforced revision {current[:19]}… was simulated")
    seq, ts, _ = runs[-1]
    return Check("simulation", SCALING, title, "enforced revision never simulated", (
        Item("simulation", f"the enforced policy set ({current[:19]}…) was never simulated; the last simulation "
             f"(chain seq {seq}, {ts}) was of another revision", fix),))


def _grants(conn: sqlite3.Connection | None, now: datetime) -> Check:
    from arxctl.registry import grants

    title = "Grants expire, and their expiry is recorded"
    items = []
    active = 0
    for grant in grants.list_grants(conn) if conn is not None else []:
        if grant.phase != grants.APPROVED:
            continue
        if grant.expires_at is None:
            items.append(Item(grant.id, f"grant for {grant.agent} is approved with no expiry",
                              f'arxctl grants revoke {grant.id} --as USER --reason "no expiry"'))
        elif grant.effective_phase(now) == grants.EXPIRED:
            items.append(Item(grant.id, f"grant for {grant.agent} expired at {grant.expires_at} but its expiry "
                              "is not recorded", "arxctl grants expire"))
        else:
            active += 1
    return Check("grants", SCALING, title, f"{_plural(active, 'active grant')}, every one expiring", tuple(items))


def _backup_owners(live: list[tuple[Any, Any]]) -> Check:
    items = []
    for head, version in live:
        annotations = version.doc["metadata"].get("annotations") or {}
        backup = str(annotations.get(BACKUP_OWNER, "")).strip()
        owner = str((version.doc["spec"].get("owner") or {}).get("email", "")).strip().lower()
        if not backup or backup.lower() == owner:
            items.append(Item(head.name, "one named owner and no backup: the agent is orphaned when they leave",
                              f"add `metadata.annotations: {{{BACKUP_OWNER}: EMAIL}}` to the manifest of "
                              f"{head.name}, then `arxctl register <manifest>`"))
    return Check("backup-owners", SCALING, "Every agent has a second (backup) owner",
                 f"{_plural(len(live) - len(items), 'agent')} with a backup owner", tuple(items))


def _rates(live: list[tuple[Any, Any]]) -> Check:
    items = []
    for head, version in live:
        if not version.doc["spec"].get("rate"):
            items.append(Item(head.name, "no spec.rate: drift cannot tell a runaway loop from normal work",
                              f"add `spec.rate: {{perMinute: N}}` to the manifest of {head.name}, then "
                              "`arxctl register <manifest>`"))
    return Check("rates", SCALING, "Every agent declares its call rate",
                 f"{_plural(len(live) - len(items), 'agent')} with a declared rate", tuple(items))


def _webhook(conn: sqlite3.Connection | None, config: Any, where: str) -> Check:
    import os

    title = "Critical drift reaches people through the signed webhook"
    hook = getattr(config, "webhook", None)
    if hook is None or not hook.url:
        return Check("webhook", SCALING, title, "no webhook", (
            Item("webhook", f"no webhook in {where}: critical drift suspends agents silently",
                 f"add `webhook: {{url: https://..., secret_env: ARX_WEBHOOK_SECRET}}` to {where}"),))
    items = []
    if not hook.secret_env:
        items.append(Item("webhook", "webhook.secret_env is not set: the webhook is never sent unsigned",
                          f"set webhook.secret_env in {where}"))
    elif not os.environ.get(hook.secret_env):
        items.append(Item("webhook", f"environment variable {hook.secret_env} is not set here: webhooks sent from "
                          "this environment are not delivered", f"export {hook.secret_env}=<secret>"))
    if conn is not None:
        last = None
        for seq, ts, body in _bodies(conn, WEBHOOK_DELIVERY):
            if body.get("final"):
                last = (seq, ts, body)
        if last is not None and last[2].get("outcome") != "delivered":
            seq, ts, body = last
            items.append(Item("webhook", f"the last drift.detected webhook ({body.get('report_id')}) was not "
                              f"delivered: {body.get('outcome')} ({body.get('detail')}) at {ts}, chain seq {seq}",
                              "arxctl drift check --from-chain --apply (re-sends undelivered reports)"))
    from arxctl.registry.webhook import origin

    return Check("webhook", SCALING, title, f"webhook to {origin(hook.url)}", tuple(items))


def render_text(assessment: Assessment) -> str:
    """The assessment for a terminal."""
    stage = assessment.stage
    lines = [f"Stage {STAGE_NUMBERS[stage]}: {stage}"]
    goal = assessment.next_stage
    if goal is not None:
        lines.append(f"{_plural(len(assessment.missing()), 'item')} between you and {goal}.")
    else:
        lines.append("Every check passes.")
    for check in assessment.checks:
        lines.append("")
        mark = "ok  " if check.ok else "MISS"
        lines.append(f"{mark} [{check.stage}] {check.title}: {check.summary}")
        for item in check.items:
            lines.append(f"       - {item.subject}: {item.detail}")
            lines.append(f"         fix: {item.fix}")
    return "\n".join(lines)


def render_markdown(assessment: Assessment) -> str:
    """The assessment as Markdown, for a ticket or a pull request."""
    stage = assessment.stage
    lines = [f"## Stage {STAGE_NUMBERS[stage]}: {stage}", ""]
    goal = assessment.next_stage
    lines.append(f"{_plural(len(assessment.missing()), 'item')} between you and {goal}." if goal
                 else "Every check passes.")
    lines += ["", "| Stage | Check | Status |", "|---|---|---|"]
    for check in assessment.checks:
        status = "ok" if check.ok else f"**missing {len(check.items)}**"
        lines.append(f"| {check.stage} | {_md(check.title)} | {status}: {_md(check.summary)} |")
    failing = [c for c in assessment.checks if not c.ok]
    for check in failing:
        lines += ["", f"### {_md(check.title)}", ""]
        for item in check.items:
            lines.append(f"- [ ] **{_md(item.subject)}**: {_md(item.detail)}. Fix: `{item.fix.replace('`', '')}`")
    return "\n".join(lines)


def _md(text: str) -> str:
    return text.replace("|", "\\|")
