"""Code hygiene: hard-coded credentials, TLS verification off, shell commands from formatted strings, secrets logged."""

from __future__ import annotations

import re
from typing import Any

import libcst as cst

from arxctl.analyze.python import Hit
from arxctl.analyze.values import Sym

DESCRIPTION = "Hygiene findings that weaken an agent's security controls"

TOKEN_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("Slack token", re.compile(r"\bxox[abposr]-[0-9A-Za-z-]{10,}")),
    ("GitHub token", re.compile(r"\b(?:gh[pousr]_[0-9A-Za-z]{36}|github_pat_[0-9A-Za-z_]{22,})")),
    ("Anthropic API key", re.compile(r"\bsk-ant-[0-9A-Za-z_-]{20,}")),
    ("OpenAI API key", re.compile(r"\bsk-(?:proj-)?[0-9A-Za-z_-]{20,}")),
    ("private key", re.compile(r"-----BEGIN (?:RSA |EC |OPENSSH |DSA |ENCRYPTED )?PRIVATE KEY-----")),
    ("Okta API token", re.compile(r"\bSSWS [0-9A-Za-z_-]{30,}")),
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("Stripe secret key", re.compile(r"\bsk_live_[0-9A-Za-z]{24,}")),
    ("password in URL", re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s:@]{3,}@")),
)
SECRET_NAME = re.compile(
    r"(?:^|_)(password|passwd|pwd|secret|token|api_?key|apikey|access_?key|secret_?key|private_?key|"
    r"client_?secret|auth_?token|bearer|credentials?)$"
)
_PLACEHOLDER = re.compile(r"[<>{}$%]|your|example|xxx|\*\*\*|redacted|placeholder|changeit_here|dummy", re.I)
_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_LOG_METHODS = frozenset({"debug", "info", "warning", "warn", "error", "exception", "critical", "log", "fatal"})
_SHELLS = frozenset({"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput",
                     "asyncio.create_subprocess_shell"})
_SUBPROCESS = frozenset({"subprocess.run", "subprocess.call", "subprocess.check_call", "subprocess.check_output",
                         "subprocess.Popen"})


def secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name.lstrip("_").lower()))


def token_kind(value: str) -> str | None:
    """The kind of credential a string contains, if it matches a known token format."""
    if "EXAMPLE" in value:
        return None
    for kind, pattern in TOKEN_PATTERNS:
        if pattern.search(value):
            return kind
    return None


def _literal(node: cst.BaseExpression) -> str | None:
    if isinstance(node, cst.SimpleString):
        value = node.evaluated_value
        return value if isinstance(value, str) else None
    if isinstance(node, cst.ConcatenatedString):
        left, right = _literal(node.left), _literal(node.right)  # type: ignore[arg-type]
        return None if left is None or right is None else left + right
    return None


def _credential_value(value: str) -> bool:
    return (len(value) >= 8 and not any(c.isspace() for c in value) and not _ENV_NAME.match(value)
            and not value.startswith(("http://", "https://", "/", "./", "arn:")) and not _PLACEHOLDER.search(value))


def _h(rule: str, node: cst.CSTNode, message: str, severity: str) -> Hit:
    return Hit(rule_id=rule, node=node, message=message, severity=severity)


def _named_secret(name: str, value_node: cst.BaseExpression) -> list[Hit]:
    match = SECRET_NAME.search(name.lstrip("_").lower())
    if match is None:
        return []
    value = _literal(value_node)
    if value is None or token_kind(value) is not None or not _credential_value(value):
        return []
    word = match.group(1).replace("_", "")
    if word in re.sub(r"[^a-z0-9]", "", value.lower()):
        return []
    return [_h("ARXA301", value_node, f"hard-coded credential assigned to '{name}' (value redacted)", "error")]


def _target_name(node: cst.BaseExpression) -> str | None:
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return node.attr.value
    return None


def _formatted(node: cst.BaseExpression) -> bool:
    if isinstance(node, cst.FormattedString):
        return any(isinstance(p, cst.FormattedStringExpression) for p in node.parts)
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Add | cst.Modulo):
        return not (_literal(node.left) is not None and _literal(node.right) is not None)
    return isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value == "format"


def _secret_refs(node: cst.BaseExpression) -> list[str]:
    """Secret-named names referenced directly (not through a call) in a logged expression."""
    if isinstance(node, cst.Name):
        return [node.value] if secret_name(node.value) else []
    if isinstance(node, cst.Attribute):
        return [node.attr.value] if secret_name(node.attr.value) else []
    if isinstance(node, cst.FormattedString):
        out: list[str] = []
        for p in node.parts:
            if isinstance(p, cst.FormattedStringExpression):
                out.extend(_secret_refs(p.expression))
        return out
    if isinstance(node, cst.BinaryOperation):
        return _secret_refs(node.left) + _secret_refs(node.right)
    if isinstance(node, cst.Tuple | cst.List):
        return [n for el in node.elements for n in _secret_refs(el.value)]
    if isinstance(node, cst.Subscript):
        return _secret_refs(node.value)
    return []


def _is_logger(analyzer: Any, func: cst.BaseExpression) -> bool:
    if isinstance(func, cst.Name):
        v = analyzer.ev(func)
        return func.value == "print" and v is None
    if not isinstance(func, cst.Attribute) or func.attr.value not in _LOG_METHODS:
        return False
    v = analyzer.ev(func.value)
    if isinstance(v, Sym):
        return v.qname.startswith(("logging", "structlog", "loguru"))
    receiver = _target_name(func.value) or ""
    return "log" in receiver.lower()


def _call(analyzer: Any, node: cst.Call) -> list[Hit]:
    out: list[Hit] = []
    for arg in node.args:
        kw = arg.keyword.value if arg.keyword is not None else None
        if kw in ("verify", "verify_ssl") and isinstance(arg.value, cst.Name) and arg.value.value == "False":
            out.append(_h("ARXA302", arg, f"TLS certificate verification disabled ({kw}=False)", "warning"))
        if kw is not None:
            out.extend(_named_secret(kw, arg.value))
    qname = analyzer.ctx.qualified(node.func)
    if qname == "ssl._create_unverified_context":
        out.append(_h("ARXA302", node, "ssl._create_unverified_context() skips certificate checks", "warning"))
    first = analyzer.ctx.arg(node, 0, "args")
    if first is not None and _formatted(first):
        shell_kw = analyzer.ctx.arg(node, None, "shell")
        shell = qname in _SHELLS or (
            qname in _SUBPROCESS and isinstance(shell_kw, cst.Name) and shell_kw.value == "True"
        )
        if shell:
            out.append(_h("ARXA303", node, f"{qname} runs a shell command built from a formatted string", "error"))
    if node.args and _is_logger(analyzer, node.func):
        names = sorted({n for a in node.args if a.keyword is None for n in _secret_refs(a.value)})
        if names:
            out.append(_h("ARXA304", node, f"secret-named value logged: {', '.join(names)}", "error"))
    return out


def check(analyzer: Any, node: cst.CSTNode) -> list[Hit]:
    """Hygiene hits at one node."""
    if isinstance(node, cst.Call):
        return _call(analyzer, node)
    if isinstance(node, cst.SimpleString):
        value = node.evaluated_value
        kind = token_kind(value) if isinstance(value, str) else None
        if kind is not None:
            return [_h("ARXA301", node, f"hard-coded {kind} (value redacted)", "error")]
        return []
    if isinstance(node, cst.Assign):
        out: list[Hit] = []
        for t in node.targets:
            name = _target_name(t.target)
            if name:
                out.extend(_named_secret(name, node.value))
        return out
    if isinstance(node, cst.AnnAssign) and node.value is not None:
        name = _target_name(node.target)
        return _named_secret(name, node.value) if name else []
    if isinstance(node, cst.DictElement):
        key = _literal(node.key)
        return _named_secret(key, node.value) if key else []
    if isinstance(node, cst.Attribute) and node.attr.value == "CERT_NONE":
        qname = analyzer.ctx.qualified(node)
        if qname == "ssl.CERT_NONE":
            return [_h("ARXA302", node, "ssl.CERT_NONE disables certificate verification", "warning")]
    return []
