"""Control mapping: evidence kinds computed for one agent, control status per framework, coverage from data."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from arxctl.analyze.graph import GraphDiff, Manifest
from arxctl.analyze.model import Finding

FRAMEWORKS = ("soc2", "nist-ai-rmf", "iso42001")
FILES = {"soc2": "soc2.yaml", "nist-ai-rmf": "nist-ai-rmf.yaml", "iso42001": "iso42001.yaml",
         "eu-ai-act": "eu-ai-act.yaml", "aiuc1": "aiuc1.yaml"}
UNITS = {"soc2": "SOC 2 criteria", "nist-ai-rmf": "NIST AI RMF subcategories",
         "iso42001": "ISO/IEC 42001 Annex A controls"}

EVIDENCE_KINDS: dict[str, str] = {
    "manifest.owner": "The agent has a named owner with an e-mail address",
    "manifest.purpose": "The agent's intended purpose is written in its manifest",
    "manifest.data-classes": "Every declared connector carries a data class",
    "graph.derived": "The connector graph was derived from the agent's code and image",
    "graph.declared-match": "Every connector and action the code uses is declared in the manifest",
    "graph.least-privilege": "Every declared action is used by some code path",
    "graph.operations-classified": "Every derived action has an operation class in the connector catalog",
    "egress.attributed": "Every raw HTTP call goes to a host attributed to a declared connector",
    "code.no-hardcoded-secrets": "No credential or token is written in the source",
    "code.tls-verified": "TLS certificate verification is never turned off",
    "code.no-shell-injection": "No shell command is built from formatted strings",
    "code.no-secret-logging": "No secret-named value is logged or printed",
    "container.hardened": "The image is pinned by digest, runs as non-root, and fetches nothing unverified",
    "container.no-secrets": "The image carries no secret in ENV or ARG",
    "evidence.pinned": "Every finding is pinned to a committed git blob, not only a content hash",
    "euaiact.classified": "The manifest records the agent's EU AI Act use case",
    "runtime.manifest-enforced": "The decision engine denies any call outside the declared graph (fails closed)",
    "runtime.drift-policy": "Drift against the declared graph suspends the agent at high and critical levels",
    "runtime.registered": "The agent is registered (versioned, with lineage) in the arxctl registry",
    "runtime.audit-chain": "The agent's registration and decisions are in the hash-linked audit chain",
    "runtime.approval-gates": "Registered policies put a human approval in front of the agent's writes",
}
_RULE_KINDS: dict[str, tuple[str, ...]] = {
    **{f"ARXA1{n:02d}": ("graph.derived", "graph.declared-match") for n in range(1, 13)},
    "ARXA201": ("graph.least-privilege",),
    "ARXA301": ("code.no-hardcoded-secrets",), "ARXA302": ("code.tls-verified",),
    "ARXA303": ("code.no-shell-injection",), "ARXA304": ("code.no-secret-logging",),
    "ARXA401": ("container.hardened",), "ARXA402": ("container.hardened",), "ARXA403": ("container.no-secrets",),
    "ARXA404": ("container.hardened",), "ARXA405": ("container.hardened",), "ARXA407": ("graph.derived",),
}
DEFAULT_DRIFT = {"low": "alert", "medium": "throttle", "high": "suspend", "critical": "suspend"}
PASS, FAIL, ABSENT = "pass", "fail", "absent"


@dataclass(frozen=True, slots=True)
class Evidence:
    """One evidence kind for this agent: pass, fail or absent, with what was found."""

    kind: str
    status: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "status": self.status, "detail": self.detail,
                "description": EVIDENCE_KINDS[self.kind]}


@dataclass(frozen=True, slots=True)
class RuntimeContext:
    """What the state store says about the agent: registration, chain records, approval-gated actions."""

    registered: bool = False
    status: str | None = None
    version: int | None = None
    chain_records: int = 0
    gated_actions: tuple[str, ...] = ()
    store: bool = False


@dataclass(frozen=True, slots=True)
class ControlResult:
    """One control's status for this agent."""

    framework: str
    id: str
    title: str
    family: str
    category: str
    mode: str
    status: str
    evidence: tuple[Evidence, ...] = ()
    why: str | None = None
    supporting: tuple[Evidence, ...] = ()
    applicable: bool = True
    applicability: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "framework": self.framework, "id": self.id, "title": self.title, "family": self.family,
            "category": self.category, "mode": self.mode, "status": self.status,
            "evidence": [e.to_dict() for e in self.evidence], "applicable": self.applicable,
        }
        if self.why:
            out["why"] = self.why
        if self.supporting:
            out["supporting"] = [e.to_dict() for e in self.supporting]
        if self.applicability:
            out["applicability"] = self.applicability
        return out


@cache
def load(framework: str) -> dict[str, Any]:
    """A control catalog from arxctl/data/controls (cached)."""
    from ruamel.yaml import YAML

    text = resources.files("arxctl.data").joinpath("controls", FILES[framework]).read_text(encoding="utf-8")
    return YAML(typ="safe", pure=True).load(text)


def controls_for_rule(rule_id: str) -> tuple[str, ...]:
    """Automated controls (`framework/id`) that a finding of this rule bears on; used as SARIF tags."""
    kinds = set(_RULE_KINDS.get(rule_id, ()))
    tags = []
    for fw in FRAMEWORKS:
        for c in load(fw)["controls"]:
            ev = c["evidence"]
            if ev["mode"] == "automated" and kinds & set(ev["kinds"]):
                tags.append(f"{fw}/{c['id']}")
    return tuple(tags)


# ---------------------------------------------------------------- evidence


def _count(findings: Sequence[Finding], *rules: str) -> list[Finding]:
    return [f for f in findings if f.rule_id in rules]


def _where(findings: Sequence[Finding], limit: int = 3) -> str:
    spots = [f"{f.path}:{f.start_line}" for f in findings[:limit]]
    more = f" (+{len(findings) - limit} more)" if len(findings) > limit else ""
    return ", ".join(spots) + more


def _flagged(kind: str, findings: Sequence[Finding], rules: tuple[str, ...], ok: str, what: str) -> Evidence:
    hits = _count(findings, *rules)
    if hits:
        return Evidence(kind, FAIL, f"{len(hits)} {what}: {_where(hits)}")
    return Evidence(kind, PASS, ok)


def collect(findings: Sequence[Finding], graph: GraphDiff, manifest: Manifest | None, runtime: RuntimeContext,
            *, files: int, dockerfiles: int, commit: str | None) -> dict[str, Evidence]:
    """Every evidence kind computed from the analysis, the manifest and the state store."""
    ev: dict[str, Evidence] = {}
    no_manifest = "no manifest given (--manifest or --agent)"

    def put(e: Evidence) -> None:
        ev[e.kind] = e

    spec = manifest.spec if manifest else {}
    if manifest is None:
        for kind in ("manifest.owner", "manifest.purpose", "manifest.data-classes", "graph.declared-match",
                     "graph.least-privilege", "euaiact.classified", "runtime.manifest-enforced",
                     "runtime.drift-policy"):
            put(Evidence(kind, ABSENT, no_manifest))
    else:
        owner = spec.get("owner") or {}
        put(Evidence("manifest.owner", PASS if owner.get("name") and owner.get("email") else FAIL,
                     f"{owner.get('name', '?')} <{owner.get('email', '?')}>" + (
                         f", team {owner['team']}" if owner.get("team") else "")))
        purpose = (spec.get("purpose") or "").strip()
        put(Evidence("manifest.purpose", PASS if purpose else FAIL, purpose or "spec.purpose is empty"))
        entries = spec.get("connectors") or []
        missing = [e.get("name") for e in entries if not e.get("dataClass")]
        put(Evidence("manifest.data-classes", FAIL if missing else PASS,
                     f"no dataClass on: {', '.join(missing)}" if missing else
                     ", ".join(f"{e.get('name')}={e.get('dataClass')}" for e in entries) or "no connectors declared"))
        if graph.undeclared:
            put(Evidence("graph.declared-match", FAIL, f"{len(graph.undeclared)} undeclared action(s): "
                         + ", ".join(u["action"] for u in graph.undeclared)))
        else:
            put(Evidence("graph.declared-match", PASS, f"all {len(graph.edges)} derived action(s) are declared"))
        if graph.unused:
            put(Evidence("graph.least-privilege", FAIL, f"{len(graph.unused)} declared action(s) unused: "
                         + ", ".join(u["action"] for u in graph.unused)))
        else:
            put(Evidence("graph.least-privilege", PASS, "every declared action is used by the code"))
        use_case = (spec.get("euAiAct") or {}).get("useCase")
        put(Evidence("euaiact.classified", PASS if use_case else FAIL,
                     f"spec.euAiAct.useCase: {use_case}" if use_case else "spec.euAiAct is not set"))
        put(Evidence("runtime.manifest-enforced", PASS,
                     f"{sum(len(e.get('actions') or []) for e in entries)} declared action(s); anything else is "
                     "denied with reason not-in-manifest"))
        drift = {**DEFAULT_DRIFT, **(spec.get("drift") or {})}
        weak = [lvl for lvl in ("high", "critical") if drift.get(lvl) != "suspend"]
        put(Evidence("runtime.drift-policy", FAIL if weak else PASS,
                     ", ".join(f"{k}: {drift[k]}" for k in ("low", "medium", "high", "critical"))
                     + (f"; {' and '.join(weak)} drift does not suspend" if weak else "")))
    put(Evidence("graph.derived", PASS if files else ABSENT,
                 f"{len(graph.edges)} action(s) over {len(graph.connectors)} connector(s) from {files} file(s)"
                 if files else "no source files analysed"))
    unknown = sorted({f.action or "" for f in findings
                      if f.is_connector and not f.in_catalog and not (f.action or "").endswith(".*")})
    put(Evidence("graph.operations-classified", FAIL if unknown else PASS,
                 f"not in the catalog: {', '.join(unknown)}" if unknown else "every derived action is in the catalog"))
    http = [f for f in findings if f.rule_id == "ARXA102"]
    stray = [f for f in http if f.connector == "http" or (manifest is not None and not f.declared)]
    if not http:
        put(Evidence("egress.attributed", PASS, "no raw HTTP calls"))
    else:
        put(Evidence("egress.attributed", FAIL if stray else PASS,
                     f"{len(stray)} HTTP call(s) to unattributed or undeclared hosts: {_where(stray)}" if stray else
                     f"{len(http)} HTTP call(s), all to hosts of declared connectors"))
    put(_flagged("code.no-hardcoded-secrets", findings, ("ARXA301",), "no hard-coded credentials found",
                 "hard-coded credential(s)"))
    put(_flagged("code.tls-verified", findings, ("ARXA302",), "TLS verification never disabled", "place(s)"))
    put(_flagged("code.no-shell-injection", findings, ("ARXA303",), "no shell commands from formatted strings",
                 "formatted shell command(s)"))
    put(_flagged("code.no-secret-logging", findings, ("ARXA304",), "no secret-named values logged",
                 "logging call(s)"))
    if dockerfiles:
        put(_flagged("container.hardened", findings, ("ARXA401", "ARXA402", "ARXA404", "ARXA405"),
                     f"{dockerfiles} Dockerfile(s): digest-pinned, non-root, no unverified downloads", "problem(s)"))
        put(_flagged("container.no-secrets", findings, ("ARXA403",), "no secrets in ENV or ARG", "secret(s)"))
    else:
        put(Evidence("container.hardened", ABSENT, "no Dockerfile analysed"))
        put(Evidence("container.no-secrets", ABSENT, "no Dockerfile analysed"))
    if commit is None:
        put(Evidence("evidence.pinned", ABSENT, "not a git work tree (or no commit yet): spans pinned by sha256 only"))
    else:
        dirty = sorted({f.path for f in findings if f.committed is False})
        put(Evidence("evidence.pinned", FAIL if dirty else PASS,
                     f"uncommitted changes in {', '.join(dirty[:5])}" if dirty else f"pinned to commit {commit[:12]}"))
    if not runtime.store:
        for kind in ("runtime.registered", "runtime.audit-chain", "runtime.approval-gates"):
            put(Evidence(kind, ABSENT, "no arxctl state store"))
    else:
        put(Evidence("runtime.registered", PASS if runtime.registered and runtime.status == "active" else FAIL,
                     f"version {runtime.version}, {runtime.status}" if runtime.registered else "not registered"))
        put(Evidence("runtime.audit-chain", PASS if runtime.chain_records else FAIL,
                     f"{runtime.chain_records} chain record(s) for this agent"))
        put(_gates(graph, manifest, runtime))
    return ev


def _gates(graph: GraphDiff, manifest: Manifest | None, runtime: RuntimeContext) -> Evidence:
    writes = sorted({e.action for e in graph.edges if e.operation != "read" and not e.action.endswith(".*")})
    if manifest is not None:
        for entry in manifest.spec.get("connectors") or []:
            writes.extend(a for a in entry.get("actions") or [] if a in runtime.gated_actions)
    if not writes:
        return Evidence("runtime.approval-gates", PASS, "the agent has no write actions to gate")
    gated = sorted(set(runtime.gated_actions))
    if not gated:
        return Evidence("runtime.approval-gates", FAIL, "no registered policy requires approval for: "
                        + ", ".join(sorted(set(writes))))
    return Evidence("runtime.approval-gates", PASS, "approval required for: " + ", ".join(gated))


def runtime_context(store: Any, name: str, agent_doc: Mapping[str, Any] | None) -> RuntimeContext:
    """Registration, chain records and approval-gated actions for an agent from the state store."""
    if store is None:
        return RuntimeContext()
    from arxctl.policy.applicability import applies
    from arxctl.registry import resources as registry

    head = registry.head(store, "Agent", name)
    records = store.conn.execute("SELECT COUNT(*) FROM chain WHERE agent = ?", (name,)).fetchone()[0]
    doc = agent_doc if agent_doc is not None else (registry.get(store, "Agent", name).doc if head else None)
    labels = ((doc or {}).get("metadata") or {}).get("labels") or {}
    actions = [a for e in ((doc or {}).get("spec") or {}).get("connectors") or [] for a in e.get("actions") or []]
    gated: set[str] = set()
    for _, version in registry.current(store, "Policy"):
        spec = version.doc["spec"]
        if not applies(spec, labels):
            continue
        for rule in spec.get("rules") or []:
            if "approvalRequired" in (rule.get("then") or {}):
                gated.update(a for a in actions if fnmatch.fnmatchcase(a, rule.get("when", "")))
    return RuntimeContext(head is not None, head.status if head else None, head.version if head else None,
                          records, tuple(sorted(gated)), True)


# ---------------------------------------------------------------- controls


def evaluate(evidence: Mapping[str, Evidence], actions: Sequence[str] = ()) -> list[ControlResult]:
    """Status of every control in every framework: evidenced, failing, missing or human-owned."""
    training = any(fnmatch.fnmatchcase(a, "*.fine_tuning.*") for a in actions)
    out: list[ControlResult] = []
    for fw in FRAMEWORKS:
        for c in load(fw)["controls"]:
            ev = c["evidence"]
            applicable, note = True, None
            rule = c.get("applicability")
            if rule and rule.get("when") == "model-training" and not training:
                applicable, note = False, rule["otherwise"]
            if ev["mode"] == "automated":
                items = tuple(evidence[k] for k in ev["kinds"])
                statuses = {e.status for e in items}
                status = "failing" if FAIL in statuses else "missing" if ABSENT in statuses else "evidenced"
                out.append(ControlResult(fw, c["id"], c["title"], c["family"], c["category"], "automated", status,
                                         items, applicable=applicable, applicability=note))
            else:
                support = tuple(evidence[k] for k in ev.get("supporting", ()))
                out.append(ControlResult(fw, c["id"], c["title"], c["family"], c["category"], "human-owned",
                                         "human-owned", (), ev["why"], support, applicable, note))
    return out


@dataclass(frozen=True, slots=True)
class Coverage:
    framework: str
    total: int
    automated: int
    evidenced: int
    failing: int
    missing: int
    human_owned: int
    sentence: str = field(default="")

    def to_dict(self) -> dict[str, Any]:
        return {"framework": self.framework, "total": self.total, "automated": self.automated,
                "evidenced": self.evidenced, "failing": self.failing, "missing": self.missing,
                "human_owned": self.human_owned, "summary": self.sentence}


def coverage(results: Sequence[ControlResult]) -> list[Coverage]:
    """Counts per framework, and the sentence a report prints; always computed, never a fixed claim."""
    out = []
    for fw in FRAMEWORKS:
        rows = [r for r in results if r.framework == fw]
        n = {s: sum(1 for r in rows if r.status == s) for s in ("evidenced", "failing", "missing", "human-owned")}
        automated = sum(1 for r in rows if r.mode == "automated")
        sentence = (f"{n['evidenced']} of {len(rows)} {UNITS[fw]} evidenced automatically from this agent; "
                    f"{n['human-owned']} human-owned"
                    + (f"; {n['failing']} failing" if n["failing"] else "")
                    + (f"; {n['missing']} without evidence" if n["missing"] else ""))
        out.append(Coverage(fw, len(rows), automated, n["evidenced"], n["failing"], n["missing"], n["human-owned"],
                            sentence))
    return out


def by_category(results: Sequence[ControlResult]) -> dict[str, dict[str, int]]:
    """Control statuses grouped by the six AIUC-1 domains."""
    out: dict[str, dict[str, int]] = {c["id"]: {"evidenced": 0, "failing": 0, "missing": 0, "human-owned": 0}
                                      for c in load("aiuc1")["categories"]}
    for r in results:
        out[r.category][r.status] += 1
    return out


def classify_eu_ai_act(manifest: Manifest | None, actions: Sequence[str]) -> dict[str, Any]:
    """The agent's EU AI Act tier from `spec.euAiAct` and the capabilities found in its code."""
    data = load("eu-ai-act")
    tiers = {t["id"]: t for t in data["tiers"]}
    areas = {a["key"]: a["title"] for a in data["annex_iii"]}
    cfg = (manifest.spec.get("euAiAct") or {}) if manifest else {}
    use_case = cfg.get("useCase")
    llm = sorted({a.split(".")[0] for a in actions if a.split(".")[0] in data["llm_connectors"]})
    channels = sorted(a for a in set(actions) if a in data["people_channels"])
    reasons: list[str] = []
    if use_case and use_case != "none":
        tier = "high-risk"
        reasons.append(f"Annex III area declared: {use_case} ({areas.get(use_case, '?')})")
        if cfg.get("profilesPeople"):
            reasons.append("profiles people, so no Art. 6(3) exemption applies")
    elif (llm and channels) or cfg.get("interactsWithPeople") or cfg.get("generatesContent"):
        tier = "transparency"
        if llm and channels:
            reasons.append(f"calls {', '.join(llm)} and reaches people through {', '.join(channels)}")
        if cfg.get("interactsWithPeople"):
            reasons.append("manifest: interacts with people")
        if cfg.get("generatesContent"):
            reasons.append("manifest: generates content")
    else:
        tier = "minimal"
        reasons.append("no Annex III area declared and no Art. 50 trigger found")
    return {
        "tier": tier, "title": tiers[tier]["title"], "obligations": tiers[tier]["obligations"],
        "declared_use_case": use_case, "derived_from": reasons, "llm_providers": llm, "people_channels": channels,
        "provisional": use_case is None,
        "note": tiers["prohibited"]["determination"],
    }
