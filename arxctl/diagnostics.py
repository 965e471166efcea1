"""One `Diagnostic` type for everything that points into a file, and its renderers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum
from xml.sax.saxutils import escape, quoteattr

import orjson

from arxctl import __version__


class Severity(StrEnum):
    error = "error"
    warning = "warning"
    info = "info"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """A problem at a position in a file (1-based line and column)."""

    path: str
    line: int
    col: int
    rule: str
    severity: str
    message: str
    json_path: str = "$"

    def render(self) -> str:
        where = f"{self.path}:{self.line}:{self.col}"
        sev = "" if self.severity == Severity.error else f" [{self.severity}]"
        return f"{where}: {self.rule}{sev} {self.json_path}: {self.message}"

    def to_dict(self) -> dict:
        return asdict(self)


# Rule ids are stable: CI systems and SARIF consumers key on them.
RULES: dict[str, str] = {
    "ARX001": "YAML syntax error",
    "ARX002": "Unreadable file (binary, not UTF-8, too large or missing)",
    "ARX003": "Document is not a mapping",
    "ARX004": "Unknown or missing kind",
    "ARX005": "Unsupported apiVersion",
    "ARX006": "Duplicate key",
    "ARX101": "Unknown field",
    "ARX102": "Missing required field",
    "ARX103": "Wrong type or value",
    "ARX110": "metadata.name is not a DNS-1123 label",
    "ARX111": "Duplicate resource in the input",
    "ARX120": "Unknown connector",
    "ARX121": "Unknown action",
    "ARX122": "Action belongs to another connector",
    "ARX123": "Connector declared twice for one agent",
    "ARX124": "Duplicate action in a connector catalog",
    "ARX130": "Duplicate rule name",
    "ARX131": "Review threshold must be below deny threshold",
    "ARX132": "Invalid duration",
    "ARX133": "Grant ttl exceeds 24h",
    "ARX140": "CEL expression does not compile",
    "ARX141": "JavaScript-style .length in CEL",
    "ARX150": "Rule `when` matches no known action",
    "ARX151": "CEL references an unknown variable",
    "ARX152": "Rule can never change an outcome",
}


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.severity == Severity.error for d in diagnostics)


def exit_code(diagnostics: list[Diagnostic], *, input_error: bool = False) -> int:
    """0 clean, 1 findings (errors), 2 unreadable input."""
    if input_error:
        return 2
    return 1 if has_errors(diagnostics) else 0


def sort_key(d: Diagnostic) -> tuple:
    return (d.path, d.line, d.col, d.rule, d.message)


def render_text(diagnostics: list[Diagnostic], files: int) -> str:
    lines = [d.render() for d in diagnostics]
    errors = sum(1 for d in diagnostics if d.severity == Severity.error)
    warnings = sum(1 for d in diagnostics if d.severity == Severity.warning)
    if not diagnostics:
        lines.append(f"ok: {files} file(s) valid")
    else:
        lines.append(f"{errors} error(s), {warnings} warning(s) in {files} file(s)")
    return "\n".join(lines)


def render_json(diagnostics: list[Diagnostic]) -> str:
    doc = {"ok": not has_errors(diagnostics), "diagnostics": [d.to_dict() for d in diagnostics]}
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()


def render_sarif(diagnostics: list[Diagnostic], *, tool: str = "arxctl-validate") -> str:
    """SARIF 2.1.0 with stable ruleIds and regions."""
    used = sorted({d.rule for d in diagnostics} | set(RULES))
    rules = [
        {
            "id": rid,
            "name": RULES.get(rid, rid).title().replace(" ", "").replace("`", "").replace(".", ""),
            "shortDescription": {"text": RULES.get(rid, rid)},
            "helpUri": "https://github.com/arxctl/arxctl#validate",
        }
        for rid in used
    ]
    index = {r["id"]: i for i, r in enumerate(rules)}
    level = {"error": "error", "warning": "warning", "info": "note"}
    results = [
        {
            "ruleId": d.rule,
            "ruleIndex": index[d.rule],
            "level": level.get(d.severity, "error"),
            "message": {"text": f"{d.json_path}: {d.message}"},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": d.path.replace("\\", "/")},
                        "region": {"startLine": max(1, d.line), "startColumn": max(1, d.col)},
                    }
                }
            ],
            "partialFingerprints": {"arxctl/v1": f"{d.rule}:{d.path}:{d.json_path}"},
        }
        for d in diagnostics
    ]
    doc = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": tool,
                        "version": __version__,
                        "informationUri": "https://github.com/arxctl/arxctl",
                        "rules": rules,
                    }
                },
                "results": results,
            }
        ],
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()


def render_junit(diagnostics: list[Diagnostic], files: list[str], *, suite: str = "arxctl validate") -> str:
    """JUnit XML: one testcase per file, one failure element per error."""
    by_file: dict[str, list[Diagnostic]] = {f: [] for f in files}
    for d in diagnostics:
        by_file.setdefault(d.path, []).append(d)
    failures = sum(1 for ds in by_file.values() if any(d.severity == Severity.error for d in ds))
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f"<testsuites><testsuite name={quoteattr(suite)} tests=\"{len(by_file)}\" "
        f'failures="{failures}" errors="0">',
    ]
    for path, ds in by_file.items():
        out.append(f"<testcase classname=\"arxctl.validate\" name={quoteattr(path)}>")
        errors = [d for d in ds if d.severity == Severity.error]
        if errors:
            body = "\n".join(d.render() for d in errors)
            out.append(
                f"<failure message={quoteattr(f'{len(errors)} error(s)')} type=\"{errors[0].rule}\">"
                f"{escape(body)}</failure>"
            )
        others = [d for d in ds if d.severity != Severity.error]
        if others:
            out.append(f"<system-out>{escape(chr(10).join(d.render() for d in others))}</system-out>")
        out.append("</testcase>")
    out.append("</testsuite></testsuites>")
    return "\n".join(out)
