"""One analysis report: findings diffed against the manifest, the graph, controls; and its text/JSON/markdown forms."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from arxctl.analyze import controls as ctl
from arxctl.analyze.engine import Analysis
from arxctl.analyze.graph import GraphDiff, Manifest, diff
from arxctl.analyze.model import Finding, severity_at_least
from arxctl.policy.catalog import Catalog


@dataclass(slots=True)
class Report:
    """Everything `analyze` prints and `evidence` bundles."""

    analysis: Analysis
    manifest: Manifest | None
    graph: GraphDiff
    findings: list[Finding]
    evidence: dict[str, ctl.Evidence]
    controls: list[ctl.ControlResult]
    coverage: list[ctl.Coverage]
    eu_ai_act: dict[str, Any]
    runtime: ctl.RuntimeContext = field(default_factory=ctl.RuntimeContext)

    @property
    def agent(self) -> str:
        return self.manifest.name if self.manifest else "agent"

    def fails(self, fail_on: str) -> bool:
        return any(severity_at_least(f.severity, fail_on) for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        """The JSON of formats.md section 8, with added fields."""
        return {
            "files": self.analysis.files,
            "findings": [f.to_dict() for f in self.findings],
            "undeclared": self.graph.undeclared,
            "controls": [c.to_dict() for c in self.controls],
            "agent": self.manifest.name if self.manifest else None,
            "lines": self.analysis.lines,
            "commit": self.analysis.commit,
            "unused": self.graph.unused,
            "graph": [e.to_dict() for e in self.graph.edges],
            "coverage": [c.to_dict() for c in self.coverage],
            "categories": ctl.by_category(self.controls),
            "eu_ai_act": self.eu_ai_act,
            "evidence_kinds": [e.to_dict() for e in self.evidence.values()],
            "summary": dict(sorted(Counter(f.severity for f in self.findings).items())),
        }


def build(analysis: Analysis, manifest: Manifest | None, catalog: Catalog,
          runtime: ctl.RuntimeContext | None = None) -> Report:
    """Diff the analysis against the manifest and map the evidence to controls."""
    runtime = runtime or ctl.RuntimeContext()
    graph = diff(analysis.findings, manifest, catalog)
    findings = [f.with_(controls=ctl.controls_for_rule(f.rule_id)) for f in graph.findings]
    findings.extend(f.with_(controls=ctl.controls_for_rule(f.rule_id)) for f in graph.unused_findings)
    findings.sort(key=lambda f: (f.path, f.start_line, f.start_col, f.rule_id, f.action or ""))
    dockerfiles = sum(1 for s in analysis.sources if not s.endswith(".py"))
    evidence = ctl.collect(findings, graph, manifest, runtime, files=analysis.files, dockerfiles=dockerfiles,
                           commit=analysis.commit)
    actions = [e.action for e in graph.edges]
    results = ctl.evaluate(evidence, actions)
    return Report(analysis, manifest, graph, findings, evidence, results, ctl.coverage(results),
                  ctl.classify_eu_ai_act(manifest, actions), runtime)


def exit_code(report: Report, fail_on: str) -> int:
    return 1 if report.fails(fail_on) else 0


def _where(f: Finding) -> str:
    return f"{f.path}:{f.start_line}:{f.start_col}"


def render_text(report: Report) -> str:
    lines = []
    for f in report.findings:
        sev = "" if f.severity == "error" else f" [{f.severity}]"
        what = f" {f.action} ({f.operation})" if f.action and f.rule_id != "ARXA201" else ""
        lines.append(f"{_where(f)}: {f.rule_id}{sev}{what}: {f.message}")
    counts = Counter(f.severity for f in report.findings)
    lines.append("")
    lines.append(f"{report.analysis.files} file(s), {report.analysis.lines} line(s); "
                 f"{len(report.graph.edges)} action(s) over {len(report.graph.connectors)} connector(s); "
                 f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} info")
    if report.manifest is not None:
        lines.append(f"agent {report.manifest.name}: {len(report.graph.undeclared)} undeclared, "
                     f"{len(report.graph.unused)} declared but unused")
    for c in report.coverage:
        lines.append(c.sentence)
    return "\n".join(lines)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: Report) -> str:
    """A pull-request comment: verdict, undeclared actions, findings, derived graph, coverage."""
    counts = Counter(f.severity for f in report.findings)
    out = [f"## arxctl analyze: {report.agent}", ""]
    if report.manifest is not None and report.graph.undeclared:
        out.append(f"**{len(report.graph.undeclared)} undeclared action(s)**: the agent's code does more than its "
                   "manifest declares. Declare them (and get them approved) or remove the calls.")
    elif report.manifest is not None:
        out.append("The code uses only declared connectors and actions.")
    out += ["", f"{report.analysis.files} file(s) analysed; {counts['error']} error(s), {counts['warning']} "
            f"warning(s), {counts['info']} info.", ""]
    if report.graph.undeclared:
        out += ["| Undeclared action | Operation | Why | Where |", "| --- | --- | --- | --- |"]
        for u in report.graph.undeclared:
            where = ", ".join(f"`{loc['path']}:{loc['start_line']}`" for loc in u["locations"][:3])
            out.append(f"| `{u['action']}` | {u['operation']} | {_md(u['reason'])} | {where} |")
        out.append("")
    problems = [f for f in report.findings if f.severity != "info"]
    if problems:
        out += ["| Severity | Rule | Where | Finding |", "| --- | --- | --- | --- |"]
        for f in problems:
            out.append(f"| {f.severity} | {f.rule_id} | `{_where(f)}` | {_md(f.message)} |")
        out.append("")
    if report.graph.edges:
        out += ["### Derived connector graph", "", "| Action | Operation | Data class | Declared | Call sites |",
                "| --- | --- | --- | --- | --- |"]
        for e in report.graph.edges:
            sites = ", ".join(f"`{f.path}:{f.start_line}`" for f in e.evidence[:3])
            more = f" +{len(e.evidence) - 3}" if len(e.evidence) > 3 else ""
            out.append(f"| `{e.action}` | {e.operation} | {e.data_class} | {'yes' if e.declared else '**no**'} | "
                       f"{sites}{more} |")
        out.append("")
    if report.graph.unused:
        unused = ", ".join(f"`{u['action']}`" for u in report.graph.unused)
        out.append(f"Declared but unused (least privilege): {unused}")
        out.append("")
    out += ["### Control coverage", ""] + [f"- {c.sentence}" for c in report.coverage]
    out += ["", f"EU AI Act: **{report.eu_ai_act['title']}**" + (" (provisional)" if report.eu_ai_act["provisional"]
                                                                 else "")]
    return "\n".join(out) + "\n"
