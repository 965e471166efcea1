"""Schema and semantic validation of Agent, Policy, Grant and ConnectorCatalog resources."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arxctl import API_VERSION
from arxctl.diagnostics import Diagnostic, Severity, sort_key
from arxctl.durations import DURATION_SYNTAX, parse_duration
from arxctl.policy.catalog import Catalog, CatalogConflict, builtin
from arxctl.policy.compiler import CEL_VARIABLES
from arxctl.policy.static import never_changes_outcome
from arxctl.resources.schema_errors import Wording, schema_diagnostics, suggest, type_name
from arxctl.resources.yamlio import Document, iter_documents, json_path_str, parse_text
from arxctl.schemas import KINDS, validator

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

INPUT_RULES = frozenset({"ARX001", "ARX002", "ARX006"})
MAX_GRANT_TTL = timedelta(hours=24)
_CEL_POS = re.compile(r"<input>:(\d+):(\d+):\s*(.*)")
_LENGTH = re.compile(r"([A-Za-z_][\w.\[\]\"']*)\.length\b(?!\s*\()")
_MACRO_VAR = re.compile(r"\.(?:all|exists|exists_one|map|filter)\(\s*([A-Za-z_]\w*)\s*,")
_DURATION_KEYS = frozenset({"ttl", "timeout"})


@dataclass(slots=True)
class Resource:
    """A resource document that passed validation, with where it came from."""

    kind: str
    name: str
    doc: dict[str, Any]
    source: Document

    @property
    def path(self) -> str:
        return self.source.path


@dataclass(slots=True)
class Report:
    files: list[str] = field(default_factory=list)
    resources: list[Resource] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def input_error(self) -> bool:
        """True when some file could not be read or parsed at all (exit 2)."""
        return any(d.rule in INPUT_RULES for d in self.diagnostics)

    @property
    def ok(self) -> bool:
        return not any(d.severity == Severity.error for d in self.diagnostics)


def _diag(doc: Document, path: Sequence[str | int], rule: str, message: str, *, key: bool = False,
          severity: str = Severity.error, at: tuple[int, int] | None = None) -> Diagnostic:
    line, col = at or doc.position(path, key=key)
    return Diagnostic(doc.path, line, col, rule, severity, message, json_path_str(path))


# ---------------------------------------------------------------- schema

def _manifest_wording(err: ValidationError, path: list[str | int]) -> Wording | None:
    """Resource-specific wording: names, durations, apiVersion and a rule's `then`."""
    v = err.validator
    if v == "pattern" and path[-2:] == ["metadata", "name"]:
        return "ARX110", (f"name {err.instance!r} is not a DNS-1123 label "
                          "(lowercase letters, digits and '-', starting and ending alphanumeric, <= 63)")
    if v == "maxLength" and path[-2:] == ["metadata", "name"]:
        return "ARX110", f"name is {len(err.instance)} characters; at most 63"
    if v == "pattern" and path and path[-1] in _DURATION_KEYS:
        return "ARX132", f"invalid duration {err.instance!r}: use a number and a unit, e.g. 30s, 15m, 4h"
    if v == "const" and path == ["apiVersion"]:
        return "ARX005", f"apiVersion {err.instance!r} is not supported; use {API_VERSION}"
    if v in ("minProperties", "maxProperties") and path and path[-1] == "then":
        return "ARX103", "a rule's `then` needs exactly one of: deny, approvalRequired"
    return None


def _list(value: Any) -> list[Any]:
    """The value when it is a list, else empty (the schema already reported the wrong type)."""
    return value if isinstance(value, list) else []


# ---------------------------------------------------------------- semantics

def _check_agent(doc: Document, spec: dict[str, Any], catalog: Catalog) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(_list(spec.get("connectors"))):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        name = entry["name"]
        base = ["spec", "connectors", i]
        if name in seen:
            out.append(_diag(doc, [*base, "name"], "ARX123",
                             f"connector '{name}' is already declared at connectors[{seen[name]}]; "
                             "merge the actions into one entry"))
        else:
            seen[name] = i
        connector = catalog.connector(name)
        if connector is None:
            out.append(_diag(doc, [*base, "name"], "ARX120",
                             f"unknown connector '{name}'{suggest(name, catalog.connectors)}"))
        for j, action in enumerate(_list(entry.get("actions"))):
            if not isinstance(action, str):
                continue
            info = catalog.lookup(action)
            where = [*base, "actions", j]
            if info is None:
                hint = suggest(action, connector.actions if connector else catalog.actions)
                out.append(_diag(doc, where, "ARX121", f"unknown action '{action}'{hint}"))
            elif info.connector != name and connector is not None:
                out.append(_diag(doc, where, "ARX122",
                                 f"action '{action}' belongs to connector '{info.connector}', not '{name}'"))
    parent = spec.get("parent")
    metadata = doc.data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if parent is not None and parent == name:
        out.append(_diag(doc, ["spec", "parent"], "ARX103", "an agent cannot be its own parent"))
    return out


def _cel_position(doc: Document, path: list[str | int], cel_line: int, cel_col: int) -> tuple[int, int]:
    """Re-base a CEL (line, col) onto the file position of the YAML scalar that holds it."""
    line, col = doc.position(path)
    lines = doc.text.splitlines()
    if not (0 < line <= len(lines)):
        return line, col
    first = lines[line - 1][col - 1:col]
    if first in ("|", ">"):
        target = line + cel_line
        if target <= len(lines) and line < len(lines):
            first_content = lines[line]
            indent = len(first_content) - len(first_content.lstrip(" "))
            return target, indent + cel_col
        return line, col
    if first in ("'", '"'):
        return line + cel_line - 1, col + cel_col if cel_line == 1 else cel_col
    return line + cel_line - 1, (col + cel_col - 1) if cel_line == 1 else cel_col


def _line_col(text: str, offset: int) -> tuple[int, int]:
    """1-based (line, col) of a character offset in a multi-line string."""
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


def check_cel(expression: str) -> tuple[tuple[int, int, str] | None, set[str]]:
    """Compile a CEL expression: (error as (line, col, message) or None, referenced variables)."""
    import cel

    try:
        program = cel.compile(expression)
    except (ValueError, RuntimeError) as exc:
        text = str(exc)
        m = _CEL_POS.search(text)
        if m:
            return (int(m.group(1)), int(m.group(2)), m.group(3).strip()), set()
        return (1, 1, text.splitlines()[0]), set()
    bound = set(_MACRO_VAR.findall(expression))
    return None, set(program.variables()) - bound


def _check_policy(doc: Document, spec: dict[str, Any], catalog: Catalog) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    thresholds = spec.get("thresholds") or {}
    if isinstance(thresholds, dict):
        review, deny = thresholds.get("review", 60), thresholds.get("deny", 80)
        if type(review) is int and type(deny) is int and review >= deny:  # a boolean is not a threshold
            key = "review" if "review" in thresholds else "deny"
            out.append(_diag(doc, ["spec", "thresholds", key], "ARX131",
                             f"review threshold {review} must be below deny threshold {deny}"))
    names: dict[str, int] = {}
    for i, rule in enumerate(_list(spec.get("rules"))):
        if not isinstance(rule, dict):
            continue
        base = ["spec", "rules", i]
        name = rule.get("name")
        if isinstance(name, str):
            if name in names:
                out.append(_diag(doc, [*base, "name"], "ARX130",
                                 f"rule name '{name}' is already used by rules[{names[name]}]"))
            else:
                names[name] = i
        when = rule.get("when")
        if isinstance(when, str) and not any(fnmatch.fnmatchcase(a, when) for a in catalog.actions):
            choices = [f"{c}.*" for c in catalog.connectors] if "*" in when else catalog.actions
            out.append(_diag(doc, [*base, "when"], "ARX150",
                             f"'{when}' matches no known action{suggest(when, choices)}; "
                             "the rule can never fire", severity=Severity.warning))
        expr = rule.get("if")
        if isinstance(expr, str):
            out.extend(_check_if(doc, [*base, "if"], expr))
        then = rule.get("then")
        if isinstance(then, dict) and isinstance(then.get("approvalRequired"), dict):
            timeout = then["approvalRequired"].get("timeout")
            if isinstance(timeout, str) and DURATION_SYNTAX.match(timeout):
                try:
                    parse_duration(timeout)
                except ValueError as exc:
                    out.append(_diag(doc, [*base, "then", "approvalRequired", "timeout"], "ARX132", str(exc)))
    out.extend(never_changes_outcome(doc, spec, catalog))
    return out


def _check_if(doc: Document, path: list[str | int], expr: str) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    m = _LENGTH.search(expr)
    if m:
        fixed = f"size({m.group(1)})"
        out.append(_diag(doc, path, "ARX141",
                         f"CEL has no '.length': write {fixed} instead of {m.group(0)}",
                         at=_cel_position(doc, path, *_line_col(expr, m.start()))))
    error, variables = check_cel(expr)
    if error:
        line, col, message = error
        out.append(_diag(doc, path, "ARX140", f"CEL: {message}", at=_cel_position(doc, path, line, col)))
    else:
        for var in sorted(variables - CEL_VARIABLES):
            m = re.search(rf"(?<![\w.]){re.escape(var)}\b", expr)
            line, col = _line_col(expr, m.start() if m else 0)
            out.append(_diag(doc, path, "ARX151",
                             f"unknown CEL variable '{var}'{suggest(var, CEL_VARIABLES)}; "
                             f"available: {', '.join(sorted(CEL_VARIABLES))}",
                             at=_cel_position(doc, path, line, col)))
    return out


def _check_grant(doc: Document, spec: dict[str, Any], catalog: Catalog) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    ttl = spec.get("ttl")
    if isinstance(ttl, str) and DURATION_SYNTAX.match(ttl):
        try:
            if parse_duration(ttl) > MAX_GRANT_TTL:
                out.append(_diag(doc, ["spec", "ttl"], "ARX133", f"ttl {ttl} exceeds the 24h maximum for a grant"))
        except ValueError as exc:
            out.append(_diag(doc, ["spec", "ttl"], "ARX132", str(exc)))
    for j, action in enumerate(_list(spec.get("actions"))):
        if isinstance(action, str) and catalog.lookup(action) is None:
            out.append(_diag(doc, ["spec", "actions", j], "ARX121",
                             f"unknown action '{action}'{suggest(action, catalog.actions)}"))
    return out


_SEMANTIC = {"Agent": _check_agent, "Policy": _check_policy, "Grant": _check_grant}


# ---------------------------------------------------------------- driver

def _structural(doc: Document) -> tuple[str | None, list[Diagnostic]]:
    """Kind and schema checks; returns the kind when the document is a known resource."""
    data = doc.data
    if not isinstance(data, dict):
        return None, [_diag(doc, [], "ARX003", f"expected a resource mapping, got {type_name(data)}")]
    kind = data.get("kind")
    if kind is None:
        return None, [_diag(doc, [], "ARX004", f"missing 'kind'; one of: {', '.join(KINDS)}")]
    if not isinstance(kind, str):
        return None, [_diag(doc, ["kind"], "ARX004",
                            f"kind must be a string, got {type_name(kind)}; one of: {', '.join(KINDS)}")]
    if kind not in KINDS:
        return None, [_diag(doc, ["kind"], "ARX004",
                            f"unknown kind {kind!r}{suggest(kind, KINDS)}; one of: {', '.join(KINDS)}")]
    return kind, schema_diagnostics(doc, validator(kind), echo_values=True, special=_manifest_wording,
                                    missing_field_path=True, outcome_key="then")


def validate_documents(
    docs: list[Document], *, base_catalog: Catalog | None = None, catalog_docs: Sequence[Document] = ()
) -> tuple[list[Resource], list[Diagnostic], Catalog]:
    """Validate parsed documents; catalogs in the input (and `catalog_docs`) extend the base catalog."""
    diagnostics: list[Diagnostic] = []
    typed: list[tuple[Document, str, bool]] = []
    catalog = base_catalog or builtin()
    for doc in [*catalog_docs, *docs]:
        kind, problems = _structural(doc)
        diagnostics.extend(problems)
        if kind is not None:
            typed.append((doc, kind, not problems))
    for doc, kind, clean in typed:
        if kind == "ConnectorCatalog" and clean:
            try:
                catalog = catalog.extend(doc.data["spec"], doc.data["metadata"]["name"])
            except CatalogConflict as exc:
                diagnostics.append(_catalog_conflict(doc, exc))
    resources: list[Resource] = []
    seen: dict[tuple[str, str], Document] = {}
    catalog_ids = {id(d) for d in catalog_docs}
    for doc, kind, clean in typed:
        spec = doc.data.get("spec")
        check = _SEMANTIC.get(kind)
        problems: list[Diagnostic] = []
        if check and isinstance(spec, dict):
            problems = check(doc, spec, catalog)
            diagnostics.extend(problems)
        metadata = doc.data.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        if id(doc) in catalog_ids or not isinstance(name, str):
            continue
        key = (kind, name)
        if key in seen:
            first = seen[key]
            diagnostics.append(_diag(doc, ["metadata", "name"], "ARX111",
                                     f"{kind} '{name}' is also defined at {first.path}:{first.start_line}"))
            continue
        seen[key] = doc
        if clean and not any(p.severity == Severity.error for p in problems):
            resources.append(Resource(kind, name, doc.data, doc))
    return resources, diagnostics, catalog


def _catalog_conflict(doc: Document, exc: CatalogConflict) -> Diagnostic:
    connector, _, rest = exc.action.partition(".")
    path: list[str | int] = ["spec", "connectors"]
    for i, entry in enumerate(doc.data["spec"]["connectors"]):
        if entry.get("name") == connector:
            path = ["spec", "connectors", i, "actions", rest]
            break
    return _diag(doc, path, "ARX124", str(exc), key=True)


def check_paths(
    paths: Sequence[Path], *, catalog_files: Sequence[Path] = (), base_catalog: Catalog | None = None
) -> Report:
    """Validate files and folders; `catalog_files` extend the catalog without being reported as resources."""
    report = Report()
    docs: list[Document] = []
    for path, file_docs, problems in iter_documents(paths):
        report.files.append(str(path))
        report.diagnostics.extend(problems)
        docs.extend(file_docs)
    extra: list[Document] = []
    for _, file_docs, problems in iter_documents(catalog_files):
        report.diagnostics.extend(problems)
        extra.extend(file_docs)
    resources, diagnostics, _ = validate_documents(docs, base_catalog=base_catalog, catalog_docs=extra)
    report.resources = resources
    report.diagnostics.extend(diagnostics)
    report.diagnostics.sort(key=sort_key)
    return report


def check_text(text: str, path: str = "<string>", *, base_catalog: Catalog | None = None) -> Report:
    """Validate YAML text (used by tests and fuzzing)."""
    docs, problems = parse_text(text, path)
    report = Report(files=[path], diagnostics=list(problems))
    resources, diagnostics, _ = validate_documents(docs, base_catalog=base_catalog)
    report.resources = resources
    report.diagnostics.extend(diagnostics)
    report.diagnostics.sort(key=sort_key)
    return report
