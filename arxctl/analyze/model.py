"""Findings with pinned evidence, and the stable rule ids that CI and SARIF consumers key on."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace
from typing import Any

SEVERITIES = ("info", "warning", "error")

# Stable rule ids (never renumber): ARXA1xx connector calls (error when undeclared), ARXA2xx graph
# diff, ARXA3xx code hygiene, ARXA4xx Dockerfile.
RULES: dict[str, tuple[str, str]] = {
    "ARXA100": ("unparseable-source", "A Python file or Dockerfile that cannot be read or parsed"),
    "ARXA101": ("boto3-call", "AWS call through boto3 clients, resources, collections or paginators"),
    "ARXA102": ("http-call", "HTTP call (requests, httpx, urllib, urllib3, aiohttp) attributed to a connector by host"),
    "ARXA103": ("slack-call", "Slack call through slack_sdk WebClient or WebhookClient"),
    "ARXA104": ("github-call", "GitHub call through PyGithub"),
    "ARXA105": ("jira-call", "Jira call through the jira package"),
    "ARXA106": ("salesforce-call", "Salesforce call through simple_salesforce"),
    "ARXA107": ("kubernetes-call", "Kubernetes API call through the kubernetes client"),
    "ARXA108": ("llm-call", "LLM provider call through the anthropic or openai SDK"),
    "ARXA110": ("database-call", "SQL through sqlite3, psycopg, psycopg2 or SQLAlchemy, classified by statement verb"),
    "ARXA111": ("process-call", "Process execution (subprocess, os.system, os.exec*, os.spawn*, os.kill)"),
    "ARXA112": ("smtp-call", "Outbound e-mail through smtplib"),
    "ARXA201": ("unused-declaration", "A declared action no code path uses (least privilege)"),
    "ARXA301": ("hardcoded-credential", "A credential or token written in source code"),
    "ARXA302": ("tls-verification-disabled", "TLS certificate verification turned off"),
    "ARXA303": ("shell-injection", "A shell command built from formatted strings"),
    "ARXA304": ("secret-logged", "A secret-named value passed to logging or print"),
    "ARXA401": ("base-image-not-pinned", "Base image not pinned by digest"),
    "ARXA402": ("container-runs-as-root", "No USER instruction, or USER root"),
    "ARXA403": ("secret-in-image", "A secret in ENV or ARG"),
    "ARXA404": ("pipe-to-shell", "A download piped into a shell"),
    "ARXA405": ("add-from-url", "ADD fetching a remote URL"),
    "ARXA406": ("exposed-port", "A port exposed by the image"),
    "ARXA407": ("tool-implies-connector", "A tool installed in the image that reaches a connector"),
}


def rule_name(rule_id: str) -> str:
    return RULES[rule_id][0]


@dataclass(frozen=True, slots=True)
class Finding:
    """One finding pinned to a source span: position, the span's sha256 and, in git, commit and blob."""

    rule_id: str
    severity: str
    message: str
    path: str
    start_line: int
    start_col: int
    end_line: int
    end_col: int
    sha256: str
    connector: str | None = None
    action: str | None = None
    operation: str | None = None
    in_catalog: bool = True
    declared: bool = False
    detail: tuple[tuple[str, str], ...] = ()
    commit: str | None = None
    blob: str | None = None
    committed: bool | None = None
    controls: tuple[str, ...] = field(default=())

    @property
    def is_connector(self) -> bool:
        return self.connector is not None

    def fingerprint(self) -> str:
        """Stable across line moves: rule, path, action and the span's content hash."""
        key = f"{self.rule_id}|{self.path}|{self.action or ''}|{self.sha256}"
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    def with_(self, **changes: Any) -> Finding:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["detail"] = dict(self.detail)
        out["controls"] = list(self.controls)
        out["rule"] = rule_name(self.rule_id)
        return out


def severity_at_least(severity: str, threshold: str) -> bool:
    return SEVERITIES.index(severity) >= SEVERITIES.index(threshold)


def span_text(text: str, start_line: int, start_col: int, end_line: int, end_col: int) -> str:
    """The text between two 1-based positions (end column exclusive), lines joined by their newlines."""
    lines = text.splitlines(keepends=True)
    if start_line < 1 or end_line > len(lines) or end_line < start_line:
        return ""
    if start_line == end_line:
        return lines[start_line - 1][start_col - 1:end_col - 1]
    chunk = [lines[start_line - 1][start_col - 1:]]
    chunk.extend(lines[start_line:end_line - 1])
    chunk.append(lines[end_line - 1][:end_col - 1])
    return "".join(chunk)


def span_sha256(text: str, start_line: int, start_col: int, end_line: int, end_col: int) -> str:
    return hashlib.sha256(span_text(text, start_line, start_col, end_line, end_col).encode("utf-8")).hexdigest()
