"""The connector graph derived from code, and its diff against an agent's declared graph."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from arxctl.analyze.model import Finding, span_sha256
from arxctl.policy.catalog import Catalog


@dataclass(frozen=True, slots=True)
class Manifest:
    """The Agent an analysis is compared with: from a file (with positions) or from the registry."""

    name: str
    doc: Mapping[str, Any]
    path: str | None = None
    source: Any = None  # resources.yamlio.Document when read from a file
    version: int | None = None

    @property
    def spec(self) -> Mapping[str, Any]:
        return self.doc.get("spec") or {}

    def entries(self) -> dict[str, Mapping[str, Any]]:
        return {e["name"]: e for e in self.spec.get("connectors") or [] if isinstance(e, Mapping)}


@dataclass(frozen=True, slots=True)
class Edge:
    """One derived action with its operation, data class, whether it is declared, and where the code does it."""

    connector: str
    action: str
    operation: str
    data_class: str
    declared: bool
    in_catalog: bool
    evidence: tuple[Finding, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "connector": self.connector, "action": self.action, "operation": self.operation,
            "data_class": self.data_class, "declared": self.declared, "in_catalog": self.in_catalog,
            "evidence": [
                {"path": f.path, "start_line": f.start_line, "end_line": f.end_line, "sha256": f.sha256,
                 "rule_id": f.rule_id} for f in self.evidence
            ],
        }


@dataclass(slots=True)
class GraphDiff:
    """Connector findings marked declared or not, the undeclared and unused actions, and findings for unused ones."""

    findings: list[Finding]
    edges: list[Edge]
    undeclared: list[dict[str, Any]] = field(default_factory=list)
    unused: list[dict[str, Any]] = field(default_factory=list)
    unused_findings: list[Finding] = field(default_factory=list)

    @property
    def connectors(self) -> list[str]:
        return sorted({e.connector for e in self.edges})


def _declared(f: Finding, entries: Mapping[str, Mapping[str, Any]]) -> tuple[bool, str]:
    entry = entries.get(f.connector or "")
    if entry is None:
        return False, f"connector '{f.connector}' is not declared in the manifest"
    if (f.action or "").endswith(".*"):
        return True, ""
    if not f.in_catalog:
        return False, f"'{f.action}' is not in the connector catalog, so no manifest can declare it"
    if f.action not in (entry.get("actions") or []):
        return False, f"action '{f.action}' is not declared for connector '{f.connector}'"
    return True, ""


def diff(findings: Sequence[Finding], manifest: Manifest | None, catalog: Catalog) -> GraphDiff:
    """Mark connector findings declared (info) or undeclared (error, fails closed); list declared-but-unused actions."""
    entries = manifest.entries() if manifest is not None else {}
    marked: list[Finding] = []
    undeclared: dict[str, dict[str, Any]] = {}
    for f in findings:
        if not f.is_connector:
            marked.append(f)
            continue
        if manifest is None:
            marked.append(f.with_(declared=False, severity="info"))
            continue
        ok, reason = _declared(f, entries)
        if ok:
            marked.append(f.with_(declared=True, severity="info"))
            continue
        marked.append(f.with_(declared=False, severity="error", message=f"{f.message}; undeclared: {reason}"))
        item = undeclared.setdefault(f.action or "", {
            "connector": f.connector, "action": f.action, "operation": f.operation, "reason": reason, "locations": [],
        })
        item["locations"].append({"path": f.path, "start_line": f.start_line, "end_line": f.end_line})
    edges = _edges(marked, entries, catalog)
    result = GraphDiff(marked, edges, [undeclared[k] for k in sorted(undeclared)])
    if manifest is not None:
        used = {e.action for e in edges}
        for i, (name, entry) in enumerate(_indexed(manifest)):
            for j, action in enumerate(entry.get("actions") or []):
                if action in used:
                    continue
                result.unused.append({"connector": name, "action": action})
                result.unused_findings.append(_unused_finding(manifest, i, j, name, action))
    return result


def _indexed(manifest: Manifest) -> list[tuple[str, Mapping[str, Any]]]:
    return [(e.get("name", ""), e) for e in manifest.spec.get("connectors") or [] if isinstance(e, Mapping)]


def _unused_finding(manifest: Manifest, i: int, j: int, connector: str, action: str) -> Finding:
    message = f"'{action}' is declared but no code path uses it; drop it for least privilege"
    if manifest.source is None or manifest.path is None:
        where = f"agent/{manifest.name}" + (f"@v{manifest.version}" if manifest.version else "")
        return Finding("ARXA201", "info", message, where, 1, 1, 1, 1, "", connector=connector, action=action,
                       declared=True)
    line, col = manifest.source.position(["spec", "connectors", i, "actions", j])
    text = manifest.source.text
    lines = text.splitlines()
    end = col + len(action) if 0 < line <= len(lines) and action in lines[line - 1] else col + 1
    sha = span_sha256(text, line, col, line, end)
    return Finding("ARXA201", "info", message, manifest.path, line, col, line, end, sha,
                   connector=connector, action=action, declared=True)


def _edges(findings: Sequence[Finding], entries: Mapping[str, Mapping[str, Any]], catalog: Catalog) -> list[Edge]:
    groups: dict[tuple[str, str], list[Finding]] = {}
    for f in findings:
        if f.is_connector and f.rule_id != "ARXA201":
            groups.setdefault((f.connector or "", f.action or ""), []).append(f)
    edges = []
    for (connector, action), group in sorted(groups.items()):
        entry = entries.get(connector) or {}
        info = catalog.connector(connector)
        data_class = entry.get("dataClass") or (info.data_class if info else "restricted")
        first = group[0]
        edges.append(Edge(connector, action, first.operation or "destructive", data_class,
                          all(g.declared for g in group), first.in_catalog, tuple(group)))
    return edges


def _node(text: str) -> str:
    return "n_" + "".join(c if c.isalnum() else "_" for c in text)


def mermaid(agent: str, edges: Sequence[Edge]) -> str:
    """The derived graph as a Mermaid flowchart; undeclared edges in red."""
    out = ["flowchart LR", f'  {_node("agent")}(["{agent}"])']
    for connector in sorted({e.connector for e in edges}):
        data_class = next(e.data_class for e in edges if e.connector == connector)
        out.append(f'  {_node("agent")} --> {_node(connector)}["{connector}<br/>{data_class}"]')
    for e in edges:
        label = f"{e.operation} · {len(e.evidence)} site(s)"
        out.append(f'  {_node(e.connector)} -->|"{label}"| {_node(e.action)}["{e.action}"]')
        if not e.declared:
            out.append(f"  class {_node(e.action)} undeclared")
    out.append("  classDef undeclared fill:#fdd,stroke:#c00,color:#900")
    return "\n".join(out) + "\n"


def dot(agent: str, edges: Sequence[Edge]) -> str:
    """The derived graph in Graphviz DOT; undeclared edges in red."""
    def q(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    out = ["digraph connectors {", "  rankdir=LR;", "  node [shape=box, fontname=Helvetica];",
           f"  {q('agent:' + agent)} [label={q(agent)}, shape=ellipse];"]
    for connector in sorted({e.connector for e in edges}):
        data_class = next(e.data_class for e in edges if e.connector == connector)
        out.append(f"  {q('connector:' + connector)} [label={q(connector + chr(10) + data_class)}];")
        out.append(f"  {q('agent:' + agent)} -> {q('connector:' + connector)};")
    for e in edges:
        color = ", color=red, fontcolor=red" if not e.declared else ""
        out.append(f"  {q('action:' + e.action)} [label={q(e.action)}{color}];")
        out.append(f"  {q('connector:' + e.connector)} -> {q('action:' + e.action)} "
                   f"[label={q(f'{e.operation} ({len(e.evidence)})')}{color}];")
    out.append("}")
    return "\n".join(out) + "\n"
