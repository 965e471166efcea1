"""An agent's declared connector graph: edges with operation, data class, score range and gating."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from arxctl.policy.catalog import Catalog
from arxctl.policy.risk import RiskModel, band

SENSITIVE = frozenset({"confidential", "restricted"})


@dataclass(frozen=True, slots=True)
class Edge:
    connector: str
    action: str
    operation: str
    data_class: str
    system: str
    env: str
    min_score: int
    max_score: int
    gated_by: tuple[str, ...]  # rules that can gate or deny this action

    @property
    def sensitive(self) -> bool:
        return self.data_class in SENSITIVE


@dataclass(frozen=True, slots=True)
class ConnectorGraph:
    agent: str
    edges: tuple[Edge, ...]
    review: int
    deny: int

    @property
    def blast_radius(self) -> int:
        return max((e.max_score for e in self.edges), default=0)

    @property
    def blast_verdict(self) -> str:
        return band(self.blast_radius, self.review, self.deny)

    def edge_verdicts(self, edge: Edge) -> tuple[str, str]:
        return band(edge.min_score, self.review, self.deny), band(edge.max_score, self.review, self.deny)

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "thresholds": {"review": self.review, "deny": self.deny},
            "blast_radius": {"score": self.blast_radius, "verdict": self.blast_verdict},
            "edges": [
                {
                    "connector": e.connector, "action": e.action, "operation": e.operation,
                    "data_class": e.data_class, "target": {"system": e.system, "env": e.env},
                    "score_range": [e.min_score, e.max_score], "gated_by": list(e.gated_by),
                }
                for e in self.edges
            ],
        }


def build_graph(
    agent_doc: Mapping[str, Any], catalog: Catalog, policies: Sequence[Mapping[str, Any]],
    model: RiskModel | None = None,
) -> ConnectorGraph:
    """Edges for every declared action, scored by the engine from a quiet to a saturated session."""
    from arxctl.policy.compiler import compile_policies
    from arxctl.policy.engine import AgentInfo, EngineState, explain

    agent = AgentInfo.from_doc(dict(agent_doc))
    state = EngineState.build([agent], compile_policies(list(policies), model), catalog)
    review, deny = state.policies.applicable(agent.labels_key)[1:]
    edges: list[Edge] = []
    for entry in agent_doc["spec"].get("connectors") or []:
        for action in entry.get("actions") or []:
            found = explain(agent.name, action, state)
            r, scores = found.resolved, found.score_range
            assert r is not None and scores is not None
            gated = tuple(sorted({rule.name for rule in found.rules}))
            edges.append(Edge(
                entry["name"], action, r.operation, r.data_class, r.system, r.env,
                scores[0]["total"], scores[1]["total"], gated,
            ))
    return ConnectorGraph(agent_doc["metadata"]["name"], tuple(edges), review, deny)


def _node_id(text: str) -> str:
    return "n_" + "".join(ch if ch.isalnum() else "_" for ch in text)


def to_mermaid(graph: ConnectorGraph) -> str:
    """A Mermaid flowchart: read/write/destructive/containment edges, gated vs open, PII-touching marked."""
    lines = ["flowchart LR", f'  {_node_id(graph.agent)}(["{graph.agent}"])']
    connectors: dict[str, Edge] = {}
    for e in graph.edges:
        connectors.setdefault(e.connector, e)
    for name, e in connectors.items():
        pii = " · PII" if e.sensitive else ""
        lines.append(f'  {_node_id("c_" + name)}[["{name}<br/>{e.data_class}{pii} · {e.system} ({e.env})"]]')
        lines.append(f"  {_node_id(graph.agent)} --> {_node_id('c_' + name)}")
    for e in graph.edges:
        gate = "gated" if e.gated_by or graph.edge_verdicts(e)[1] != "ALLOW" else "open"
        label = f"{e.operation} · {gate} · {e.min_score}-{e.max_score}"
        arrow = "==>" if e.operation in ("destructive", "containment") else "-.->" if e.operation == "read" else "-->"
        lines.append(f'  {_node_id("a_" + e.action)}("{e.action}")')
        lines.append(f'  {_node_id("c_" + e.connector)} {arrow}|"{label}"| {_node_id("a_" + e.action)}')
        lines.append(f"  class {_node_id('a_' + e.action)} op_{e.operation}")
    lines += [
        "  classDef op_read fill:#e8f5e9,stroke:#2e7d32",
        "  classDef op_write fill:#fff8e1,stroke:#f9a825",
        "  classDef op_destructive fill:#ffebee,stroke:#c62828",
        "  classDef op_containment fill:#ede7f6,stroke:#4527a0",
    ]
    return "\n".join(lines)


def to_dot(graph: ConnectorGraph) -> str:
    colors = {"read": "darkgreen", "write": "orange3", "destructive": "red3", "containment": "purple"}
    lines = [
        f'digraph "{graph.agent}" {{',
        "  rankdir=LR;",
        '  node [fontname="Helvetica"];',
        f'  "{graph.agent}" [shape=doubleoctagon];',
    ]
    seen: set[str] = set()
    for e in graph.edges:
        cid = f"connector:{e.connector}"
        if cid not in seen:
            seen.add(cid)
            pii = "\\nPII" if e.sensitive else ""
            lines.append(
                f'  "{cid}" [shape=box, label="{e.connector}\\n{e.data_class}{pii}\\n{e.system} ({e.env})"'
                + (", style=filled, fillcolor=mistyrose" if e.sensitive else "")
                + "];"
            )
            lines.append(f'  "{graph.agent}" -> "{cid}";')
        gated = bool(e.gated_by) or graph.edge_verdicts(e)[1] != "ALLOW"
        lines.append(f'  "{e.action}" [shape=ellipse, color={colors.get(e.operation, "black")}];')
        lines.append(
            f'  "{cid}" -> "{e.action}" [label="{e.operation} {e.min_score}-{e.max_score}", '
            f'color={colors.get(e.operation, "black")}, style={"dashed" if gated else "solid"}];'
        )
    lines.append("}")
    return "\n".join(lines)
