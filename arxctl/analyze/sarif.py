"""SARIF 2.1.0 for GitHub code scanning: stable ruleIds, regions, partialFingerprints, control tags."""

from __future__ import annotations

from typing import Any

from arxctl import __version__
from arxctl.analyze.controls import controls_for_rule
from arxctl.analyze.model import RULES
from arxctl.analyze.report import Report

_LEVEL = {"error": "error", "warning": "warning", "info": "note"}
_SECURITY = {"ARXA301": "9.0", "ARXA303": "8.5", "ARXA304": "6.5", "ARXA302": "6.0", "ARXA403": "8.0",
             "ARXA404": "7.5"}
HELP_URI = "https://github.com/arxctl/arxctl#arxctl-analyze"


def _rule(rule_id: str) -> dict[str, Any]:
    name, text = RULES[rule_id]
    tags = ["arxctl", "connector" if rule_id[:5] in ("ARXA1", "ARXA2") else "security", *controls_for_rule(rule_id)]
    props: dict[str, Any] = {"tags": tags}
    if rule_id in _SECURITY:
        props["security-severity"] = _SECURITY[rule_id]
    return {
        "id": rule_id,
        "name": "".join(w.title() for w in name.split("-")),
        "shortDescription": {"text": text},
        "fullDescription": {"text": text},
        "helpUri": HELP_URI,
        "help": {"text": text, "markdown": f"**{rule_id}** {text}. See the arxctl README, section *arxctl analyze*."},
        "properties": props,
    }


def render(report: Report) -> dict[str, Any]:
    """The SARIF log as a dict."""
    rules = [_rule(rid) for rid in sorted(RULES)]
    index = {r["id"]: i for i, r in enumerate(rules)}
    results = []
    for f in report.findings:
        region: dict[str, Any] = {"startLine": max(1, f.start_line), "startColumn": max(1, f.start_col),
                                  "endLine": max(1, f.end_line), "endColumn": max(1, f.end_col)}
        props: dict[str, Any] = {"tags": list(f.controls), "sha256": f.sha256}
        if f.connector:
            props.update({"connector": f.connector, "action": f.action, "operation": f.operation,
                          "declared": f.declared})
        if f.commit:
            props.update({"commit": f.commit, "blob": f.blob})
        result: dict[str, Any] = {
            "ruleId": f.rule_id,
            "ruleIndex": index[f.rule_id],
            "level": _LEVEL[f.severity],
            "message": {"text": f.message if not f.action else f"{f.action} ({f.operation}): {f.message}"},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": f.path, "uriBaseId": "%SRCROOT%"},
                                                "region": region}}],
            "partialFingerprints": {"arxctl/v1": f.fingerprint()},
            "properties": props,
        }
        results.append(result)
    run: dict[str, Any] = {
        "tool": {"driver": {"name": "arxctl-analyze", "semanticVersion": __version__, "version": __version__,
                            "informationUri": "https://github.com/arxctl/arxctl", "rules": rules}},
        "originalUriBaseIds": {"%SRCROOT%": {"uri": report.analysis.root.as_uri() + "/"}},
        "results": results,
        "properties": {"agent": report.manifest.name if report.manifest else None,
                       "coverage": [c.to_dict() for c in report.coverage]},
    }
    if report.analysis.commit:
        run["versionControlProvenance"] = [{"repositoryUri": report.analysis.root.as_uri(),
                                            "revisionId": report.analysis.commit}]
    return {"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0", "runs": [run]}
