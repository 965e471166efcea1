"""Rendering a simulate report as text for terminals, markdown for pull-request comments and JUnit for CI."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import orjson

from arxctl.policy.compiler import VERDICTS

SHORT = {"ALLOW": "ALLOW", "APPROVAL_REQUIRED": "APPROVAL", "DENY": "DENY"}
TOP_AGENTS = 10
TOP_BLOCKED = 10
TOP_DAYS = 5


def _pct(n: int, total: int) -> str:
    return f"{100.0 * n / total:.1f}%" if total else "0.0%"


def _delta(a: int, b: int) -> str:
    d = b - a
    return f"+{d}" if d > 0 else str(d)


def _gate_line(gate: Mapping[str, Any]) -> str:
    mark = "ok" if gate["ok"] else "FAILED"
    return f"{gate['gate']}: {gate['value']} (limit {gate['limit']}) {mark}"


def _summary_rows(report: Mapping[str, Any]) -> list[tuple[str, int, int, str]]:
    return [(v, report["baseline"][v], report["proposed"][v], _delta(report["baseline"][v], report["proposed"][v]))
            for v in VERDICTS]


def _payload_text(payload: Any) -> str:
    if payload is None:
        return "(payload not recorded)"
    text = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS).decode()
    return text if len(text) <= 160 else text[:157] + "..."


def _outcome_text(outcome: Mapping[str, Any]) -> str:
    rules = ", ".join(outcome["rules"])
    return f"{outcome['verdict']} ({outcome['reason']}{': ' + rules if rules else ''})"


def _busiest(report: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    load = report["approval_load"]
    return sorted(load.items(), key=lambda kv: (-(kv[1]["proposed"] - kv[1]["baseline"]), kv[0]))


def render_text(report: Mapping[str, Any]) -> str:
    """A terminal summary: verdict counts, flips, gates, most affected agents, pager load, examples."""
    events = report["events"]
    sides = report["sides"]
    out = [
        f"replayed {events} events from {', '.join(report['input']['sources'])}",
        f"baseline  {sides['baseline']['source']}",
        f"proposed  {sides['proposed']['source']}",
        f"registry  {report['registry']}",
        "",
        f"{'verdict':<18} {'baseline':>10} {'proposed':>10} {'change':>8}",
    ]
    for verdict, a, b, d in _summary_rows(report):
        out.append(f"{verdict:<18} {a:>10} {b:>10} {d:>8}")
    out.append("")
    if report["flips"]:
        out.append("flips: " + ", ".join(f"{f['from']}->{f['to']} {f['count']}" for f in report["flips"]))
    else:
        out.append("flips: none")
    out.append(f"new denies {report['new_denies']}, new approvals {report['new_approvals']} "
               f"(at most {report['max_new_approvals_per_day']} on one day)")
    for gate in report.get("gates", []):
        out.append(f"gate {_gate_line(gate)}")
    affected = [(a, e) for a, e in report["by_agent"].items() if e["flips"]][:TOP_AGENTS]
    if affected:
        out += ["", "most affected agents:"]
        for agent, e in affected:
            out.append(f"  {agent}: {e['flips']} of {e['events']} calls change "
                       f"(+{e['new_denies']} DENY, +{e['new_approvals']} APPROVAL_REQUIRED)")
    changed = [(g, v) for g, v in _busiest(report) if v["proposed"] != v["baseline"]]
    if changed:
        out += ["", "approval load (approver group: calls needing approval, baseline -> proposed; busiest day):"]
        for group, v in changed:
            out.append(f"  {group}: {v['baseline']} -> {v['proposed']}; {v['peak_day']} with {v['peak']}")
    if report["blocked"]:
        out += ["", "would be blocked:"]
        for b in report["blocked"][:TOP_BLOCKED]:
            why = ", ".join(b["rules"]) or b["reason"]
            out.append(f"  {b['count']} x {b['agent']} {b['action']} ({b['from']} -> DENY: {why})")
    if report["examples"]:
        out += ["", "examples:"]
        for ex in report["examples"]:
            out.append(f"  {ex['location']} {ex['ts']} {ex['agent']} {ex['action']} {_payload_text(ex['payload'])}")
            out.append(f"    baseline {_outcome_text(ex['baseline'])} -> proposed {_outcome_text(ex['proposed'])}")
    unevaluable = report["unevaluable"]
    if unevaluable["baseline"] or unevaluable["proposed"]:
        out += ["", f"unevaluable (rules read payloads the chain does not keep; counted as DENY): "
                    f"baseline {unevaluable['baseline']}, proposed {unevaluable['proposed']}"]
    malformed = report["malformed"]
    if malformed["count"]:
        out += ["", f"malformed lines: {malformed['count']} (skipped)"]
        out += [f"  {line}" for line in malformed["lines"]]
    for note in report.get("notes", []):
        out.append(f"note: {note}")
    if "ok" in report:
        out += ["", "result: " + ("every gate holds" if report["ok"] else "a gate FAILED")]
    return "\n".join(out) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(report: Mapping[str, Any]) -> str:
    """A pull-request comment: a headline, the gates, the counts, flips and who is affected."""
    events = report["events"]
    gates = report.get("gates", [])
    sides = report["sides"]
    if gates:
        icon = "✅" if report.get("ok") else "❌"
        head = f"### {icon} arxctl simulate: {'every gate holds' if report.get('ok') else 'a gate failed'}"
    else:
        head = "### arxctl simulate"
    flipped = sum(f["count"] for f in report["flips"])
    out = [
        head, "",
        f"Replayed **{events:,}** calls: **{flipped:,}** change verdict ({_pct(flipped, events)}), "
        f"**{report['new_denies']:,}** new denies, **{report['new_approvals']:,}** new approvals "
        f"(at most {report['max_new_approvals_per_day']:,} on one day).", "",
        f"Baseline: `{sides['baseline']['source']}` · Proposed: `{sides['proposed']['source']}` · "
        f"Registry: {report['registry']}", "",
    ]
    if gates:
        out += ["| gate | limit | value | result |", "|---|---:|---:|---|"]
        for g in gates:
            out.append(f"| `{g['gate']}` | {g['limit']} | {g['value']} | {'✅ ok' if g['ok'] else '❌ failed'} |")
        out.append("")
    out += ["| verdict | baseline | proposed | change |", "|---|---:|---:|---:|"]
    for verdict, a, b, d in _summary_rows(report):
        out.append(f"| {verdict} | {a:,} | {b:,} | {d} |")
    out.append("")
    if report["flips"]:
        out += ["| flip | calls |", "|---|---:|"]
        out += [f"| {f['from']} → {f['to']} | {f['count']:,} |" for f in report["flips"]]
        out.append("")
    affected = [(a, e) for a, e in report["by_agent"].items() if e["flips"]][:TOP_AGENTS]
    if affected:
        out += ["<details><summary>Most affected agents</summary>", "",
                "| agent | calls | flips | new DENY | new APPROVAL |", "|---|---:|---:|---:|---:|"]
        out += [f"| `{a}` | {e['events']:,} | {e['flips']:,} | {e['new_denies']:,} | {e['new_approvals']:,} |"
                for a, e in affected]
        out += ["", "</details>", ""]
    changed = [(g, v) for g, v in _busiest(report) if v["proposed"] != v["baseline"]]
    if changed:
        out += ["<details><summary>Approval load per approver group</summary>", "",
                "| approvers | baseline | proposed | busiest day |", "|---|---:|---:|---|"]
        out += [f"| `{_md_escape(g)}` | {v['baseline']:,} | {v['proposed']:,} | {v['peak_day']} ({v['peak']:,}) |"
                for g, v in changed]
        out += ["", "</details>", ""]
    if report["blocked"]:
        out += ["<details><summary>Would be blocked</summary>", "",
                "| calls | agent | action | was | rules |", "|---:|---|---|---|---|"]
        out += [f"| {b['count']:,} | `{b['agent']}` | `{b['action']}` | {b['from']} | "
                f"{_md_escape(', '.join(b['rules']) or b['reason'])} |" for b in report["blocked"][:TOP_BLOCKED]]
        out += ["", "</details>", ""]
    if report["examples"]:
        out += ["<details><summary>Examples (payloads masked)</summary>", ""]
        for ex in report["examples"]:
            out.append(f"- `{ex['location']}` {ex['ts']} `{ex['agent']}` `{ex['action']}`: "
                       f"{_md_escape(_outcome_text(ex['baseline']))} → {_md_escape(_outcome_text(ex['proposed']))}"
                       f"<br>`{_md_escape(_payload_text(ex['payload']))}`")
        out += ["", "</details>", ""]
    unevaluable = report["unevaluable"]
    if unevaluable["baseline"] or unevaluable["proposed"]:
        out += [f"> Unevaluable (rules read payloads the chain does not keep; counted as DENY): baseline "
                f"{unevaluable['baseline']:,}, proposed {unevaluable['proposed']:,}.", ""]
    if report["malformed"]["count"]:
        out += [f"> {report['malformed']['count']:,} malformed lines were skipped; first: "
                f"`{_md_escape(report['malformed']['lines'][0])}`", ""]
    return "\n".join(out).rstrip() + "\n"


def render_junit(report: Mapping[str, Any]) -> str:
    """JUnit XML: one testcase per gate (none when no gate is set), the summary as the suite's system-out."""
    gates = report.get("gates", [])
    failures = sum(1 for g in gates if not g["ok"])
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<testsuites><testsuite name="arxctl simulate" tests="{len(gates)}" failures="{failures}" errors="0">',
    ]
    for g in gates:
        out.append(f'<testcase classname="arxctl.simulate" name={quoteattr(g["gate"])}>')
        if not g["ok"]:
            message = f"{g['value']} > {g['limit']}"
            out.append(f'<failure message={quoteattr(message)} type="gate">{escape(_gate_line(g))}</failure>')
        out.append("</testcase>")
    out.append(f"<system-out>{escape(render_text(report))}</system-out>")
    out.append("</testsuite></testsuites>")
    return "\n".join(out) + "\n"
