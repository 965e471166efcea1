"""A Dockerfile reader (parsed in Python): base image pinning, USER, secrets, curl|sh, ADD URL, ports, tools."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from arxctl.analyze.model import Finding, span_sha256
from arxctl.analyze.rules.hygiene import secret_name, token_kind

NAMES = ("Dockerfile", "Containerfile")
_ESCAPE = re.compile(r"^#\s*escape\s*=\s*([\\`])\s*$", re.I)
_HEREDOC = re.compile(r"<<-?\s*['\"]?([A-Za-z_][A-Za-z0-9_]*)['\"]?")
_PIPE_SHELL = re.compile(
    r"\b(curl|wget)\b[^|;&]*\|\s*(?:sudo\s+)?(?:/usr/bin/env\s+)?(?:/bin/)?(sh|bash|zsh|ash|dash|python3?)\b"
)
_URL = re.compile(r"^https?://", re.I)
# Installed tools that reach a connector: (pattern, connector).
TOOLS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"\b(awscli|aws-cli|awscliv2)\b|awscli-exe|\baws/install\b"), "aws", "awscli"),
    (re.compile(r"\bkubectl\b"), "kubernetes", "kubectl"),
    (re.compile(r"\b(gh|github-cli)\b(?=\s|$)"), "github", "gh"),
    (re.compile(r"\b(postgresql-client|psql)\b"), "postgres", "psql"),
    (re.compile(r"\bsqlite3?\b(?![\w.-]*\.(?:py|so))"), "sqlite", "sqlite3"),
)
_INSTALL = re.compile(r"\b(apt-get|apt|apk|yum|dnf|microdnf|pip3?|uv pip|pipx|brew|curl|wget)\b")


@dataclass(frozen=True, slots=True)
class Instruction:
    """One instruction with its 1-based line span and the text of its arguments (continuations joined)."""

    keyword: str
    args: str
    start_line: int
    end_line: int
    end_col: int


def parse(text: str) -> list[Instruction]:
    """Instructions in order; comments and blank lines skipped, line continuations and heredocs joined."""
    lines = text.splitlines()
    escape = "\\"
    for line in lines[:5]:
        m = _ESCAPE.match(line.strip())
        if m:
            escape = m.group(1)
        elif not line.startswith("#"):
            break
    out: list[Instruction] = []
    i = 0
    while i < len(lines):
        raw = lines[i]
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        start = i
        parts = []
        current = raw
        while True:
            body = current.rstrip()
            if body.endswith(escape) and i + 1 < len(lines):
                parts.append(body[:-1])
                i += 1
                current = lines[i]
                while current.strip().startswith("#") and i + 1 < len(lines):
                    i += 1
                    current = lines[i]
                continue
            parts.append(body)
            break
        joined = " ".join(p.strip() for p in parts)
        heredoc = _HEREDOC.search(joined)
        if heredoc:
            marker = heredoc.group(1)
            while i + 1 < len(lines):
                i += 1
                if lines[i].strip() == marker:
                    break
                joined += "\n" + lines[i]
        keyword, _, args = joined.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start + 1, i + 1, len(lines[i]) + 1))
        i += 1
    return out


def _finding(text: str, path: str, ins: Instruction, rule: str, severity: str, message: str,
             **extra: object) -> Finding:
    sha = span_sha256(text, ins.start_line, 1, ins.end_line, ins.end_col)
    return Finding(rule, severity, message, path, ins.start_line, 1, ins.end_line, ins.end_col, sha, **extra)  # type: ignore[arg-type]


def _kv_pairs(args: str) -> list[tuple[str, str | None]]:
    try:
        tokens = shlex.split(args, posix=True)
    except ValueError:
        tokens = args.split()
    if len(tokens) >= 2 and "=" not in tokens[0]:
        return [(tokens[0], " ".join(tokens[1:]))]
    out: list[tuple[str, str | None]] = []
    for t in tokens:
        key, eq, value = t.partition("=")
        out.append((key, value if eq else None))
    return out


def analyze(text: str, path: str) -> list[Finding]:
    """Findings for one Dockerfile."""
    instructions = parse(text)
    out: list[Finding] = []
    stages: set[str] = set()
    final_from: Instruction | None = None
    final_user: Instruction | None = None
    for ins in instructions:
        kw, args = ins.keyword, ins.args
        if kw == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            image = words[0] if words else ""
            if len(words) >= 3 and words[1].lower() == "as":
                stages.add(words[2].lower())
            final_from, final_user = ins, None
            if image.lower() in stages or image == "scratch" or "@sha256:" in image:
                continue
            out.append(_finding(text, path, ins, "ARXA401", "warning",
                                f"base image '{image}' is not pinned by digest (@sha256:...)"))
        elif kw == "USER":
            final_user = ins
        elif kw in ("ENV", "ARG"):
            for key, value in _kv_pairs(args):
                if secret_name(key) or (value and token_kind(value)):
                    how = ("puts a secret in a build argument, kept in the image history" if kw == "ARG"
                           else "bakes a secret into the image")
                    out.append(_finding(text, path, ins, "ARXA403", "error",
                                        f"{kw} {key} {how}; use a build secret or runtime injection"))
        elif kw == "RUN":
            if _PIPE_SHELL.search(args):
                out.append(_finding(text, path, ins, "ARXA404", "error",
                                    "a download is piped into a shell; fetch, verify a checksum, then run"))
            if _INSTALL.search(args):
                for pattern, connector, tool in TOOLS:
                    if pattern.search(args):
                        out.append(_finding(
                            text, path, ins, "ARXA407", "info", f"installs {tool}, which reaches connector {connector}",
                            connector=connector, action=f"{connector}.*", operation="destructive",
                            in_catalog=False, detail=(("tool", tool),),
                        ))
        elif kw == "ADD":
            sources = [w for w in args.split() if not w.startswith("--")][:-1]
            for src in sources:
                if _URL.match(src):
                    out.append(_finding(text, path, ins, "ARXA405", "warning",
                                        f"ADD fetches {src.split('?')[0]} at build time; download with a checksum"))
        elif kw == "EXPOSE":
            out.append(_finding(text, path, ins, "ARXA406", "info", f"exposes port(s) {args}"))
    if final_from is not None:
        if final_user is None:
            out.append(_finding(text, path, final_from, "ARXA402", "warning",
                                "the final stage sets no USER, so the container runs as root"))
        elif final_user.args.split(":")[0].strip() in ("root", "0"):
            out.append(_finding(text, path, final_user, "ARXA402", "warning", "USER root: the container runs as root"))
    return out


def is_dockerfile(name: str) -> bool:
    lower = name.lower()
    return name in NAMES or lower.startswith(("dockerfile.", "containerfile.")) or lower.endswith(".dockerfile")
