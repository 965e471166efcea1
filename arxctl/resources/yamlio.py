"""Multi-document YAML with line and column for every node.

Parsing uses libyaml through PyYAML's composer (C speed, node marks for every key and value); values are
built here under the YAML 1.2 core schema (as Kubernetes users expect: `yes`/`on` are strings), with
duplicate-key detection, merge keys and a node budget against alias bombs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from arxctl.diagnostics import Diagnostic, Severity

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_NODES = 200_000
YAML_SUFFIXES = (".yaml", ".yml")
INT64 = 2**63
_MERGE = "tag:yaml.org,2002:merge"
_STR = "tag:yaml.org,2002:str"
_PLAIN = "tag:arx.dev,2026:plain"


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml composer that leaves untagged plain scalars for YAML 1.2 resolution here."""

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode and implicit[0] and value != "<<":
            return _PLAIN
        return super().resolve(kind, value, implicit)

JsonPath = Sequence[str | int]


@dataclass(slots=True)
class Document:
    """One YAML document: plain data plus the node tree that knows positions."""

    path: str
    index: int
    data: Any
    node: Node | None
    start_line: int = 1
    text: str = field(default="", repr=False)

    def position(self, json_path: JsonPath, *, key: bool = False) -> tuple[int, int]:
        """1-based (line, col) of the node at `json_path`, or of its key when `key`.

        Falls back to the deepest ancestor that exists (e.g. a missing field points at its parent).
        """
        node = self.node
        if node is None:
            return self.start_line, 1
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
        for i, part in enumerate(json_path):
            last = i == len(json_path) - 1
            if isinstance(node, MappingNode):
                found = None
                for k, v in _pairs(node):
                    if isinstance(k, ScalarNode) and k.value == part:
                        found = (k, v)
                if found is None:
                    break
                k, v = found
                if last and key:
                    return k.start_mark.line + 1, k.start_mark.column + 1
                node = v
            elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
                node = node.value[part]
            else:
                break
            line, col = node.start_mark.line + 1, node.start_mark.column + 1
        return line, col


def _pairs(node: MappingNode) -> list[tuple[Node, Node]]:
    """Key/value node pairs with merge keys (`<<`) expanded; explicit keys win over merged ones."""
    own = [(k, v) for k, v in node.value if k.tag != _MERGE]
    merged: list[tuple[Node, Node]] = []
    for k, v in node.value:
        if k.tag == _MERGE:
            sources = v.value if isinstance(v, SequenceNode) else [v]
            for src in sources:
                if isinstance(src, MappingNode):
                    merged.extend(_pairs(src))
    if not merged:
        return own
    names = {k.value for k, _ in own if isinstance(k, ScalarNode)}
    return [(k, v) for k, v in merged if not (isinstance(k, ScalarNode) and k.value in names)] + own


class _BuildError(Exception):
    """A value that has no JSON form: carries the node and a message."""

    def __init__(self, node: Node, message: str, rule: str = "ARX001", path: list[str | int] | None = None) -> None:
        self.node, self.message, self.rule, self.path = node, message, rule, path or []
        super().__init__(message)


_INT = re.compile(r"^[-+]?[0-9]+$")
_OCT = re.compile(r"^0o[0-7]+$")
_HEX = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_INF = {".inf": math.inf, ".Inf": math.inf, ".INF": math.inf, "+.inf": math.inf, "+.Inf": math.inf,
        "+.INF": math.inf, "-.inf": -math.inf, "-.Inf": -math.inf, "-.INF": -math.inf}
_NULLS = {"", "~", "null", "Null", "NULL"}
_TRUE = {"true", "True", "TRUE"}
_FALSE = {"false", "False", "FALSE"}


def _scalar(node: ScalarNode, path: list[str | int]) -> Any:
    """Resolve an untagged plain scalar under the YAML 1.2 core schema; anything else stays a string."""
    value = node.value
    if node.tag != _PLAIN:
        return value  # quoted, or explicitly tagged: the text as written
    if value in _NULLS:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    number: int | None = None
    if _INT.match(value):
        number = int(value, 10)
    elif _OCT.match(value):
        number = int(value[2:], 8)
    elif _HEX.match(value):
        number = int(value[2:], 16)
    if number is not None:
        if not -INT64 <= number < INT64:
            raise _BuildError(node, "integer out of the 64-bit range", path=path)
        return number
    if _FLOAT.match(value):
        return float(value)
    if value in _INF:
        return _INF[value]
    if value in (".nan", ".NaN", ".NAN"):
        return math.nan
    return value


def build(node: Node, budget: list[int], path: list[str | int]) -> Any:
    """Plain JSON-compatible Python values from a composed node tree."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _BuildError(node, f"document has more than {MAX_NODES} nodes (alias expansion?)", path=[])
    if isinstance(node, ScalarNode):
        return _scalar(node, path)
    if isinstance(node, SequenceNode):
        return [build(child, budget, [*path, i]) for i, child in enumerate(node.value)]
    if isinstance(node, MappingNode):
        out: dict[str, Any] = {}
        first_seen: dict[str, Node] = {}
        for k, _ in node.value:
            if k.tag == _MERGE:
                continue
            if not isinstance(k, ScalarNode):
                raise _BuildError(k, "mapping keys must be plain strings", path=path)
            name = k.value
            if name in first_seen:
                line = first_seen[name].start_mark.line + 1
                raise _BuildError(k, f'duplicate key "{name}" (first defined at line {line})', "ARX006",
                                  [*path, name])
            first_seen[name] = k
        for k, v in _pairs(node):
            name = k.value if isinstance(k, ScalarNode) else str(k)
            out[name] = build(v, budget, [*path, name])
        return out
    raise _BuildError(node, f"unsupported YAML node {type(node).__name__}", path=path)


def json_path_str(parts: JsonPath) -> str:
    """`$.spec.rules[0].then` from ('spec', 'rules', 0, 'then')."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.replace("_", "").replace("-", "").isalnum() and not part[:1].isdigit():
            out += f".{part}"
        else:
            out += "[" + repr(part) + "]"
    return out


INT64 = 2**63


_BAD_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


def _bad_char_position(text: str) -> tuple[int, int, str] | None:
    """The first character YAML forbids in a text stream, as (line, col, code point)."""
    m = _BAD_CHAR.search(text)
    if m is None:
        return None
    before = text[: m.start()]
    line = before.count("\n") + 1
    col = m.start() - (before.rfind("\n") + 1) + 1
    return line, col, f"U+{ord(m.group()):04X}"


def parse_text(text: str, path: str) -> tuple[list[Document], list[Diagnostic]]:
    """Parse YAML text into documents; problems become diagnostics, never exceptions."""
    bad = _bad_char_position(text)
    if bad:
        line, col, code = bad
        return [], [
            Diagnostic(path, line, col, "ARX002", Severity.error, f"control character {code}: not a text file")
        ]
    if text.startswith("\ufeff"):
        text = text[1:]
    docs: list[Document] = []
    try:
        for index, node in enumerate(yaml.compose_all(text, Loader=_Loader)):
            if node is None:
                continue
            start = node.start_mark.line + 1
            try:
                data = build(node, [MAX_NODES], [])
            except _BuildError as exc:
                line, col = exc.node.start_mark.line + 1, exc.node.start_mark.column + 1
                return [], [Diagnostic(path, line, col, exc.rule, Severity.error, exc.message, json_path_str(exc.path))]
            if isinstance(node, ScalarNode) and data is None:
                continue
            docs.append(Document(path, index, data, node, start, text))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return [], [Diagnostic(path, line, col, "ARX001", Severity.error, _yaml_message(exc, text, line))]
    except yaml.YAMLError as exc:
        return [], [Diagnostic(path, 1, 1, "ARX001", Severity.error, f"YAML error: {exc}".splitlines()[0])]
    except RecursionError:
        return [], [Diagnostic(path, 1, 1, "ARX001", Severity.error, "YAML nesting too deep")]
    return docs, []


def _yaml_message(exc: yaml.MarkedYAMLError, text: str, line: int) -> str:
    problem = (exc.problem or exc.context or "YAML syntax error").strip()
    if "\t" in problem or "'\\t'" in problem:
        return "tab character used for indentation; YAML indents with spaces"
    lines = text.splitlines()
    if 0 < line <= len(lines) and lines[line - 1].lstrip(" ").startswith("\t"):
        return "tab character used for indentation; YAML indents with spaces"
    context = f" ({exc.context.strip()})" if exc.context and exc.context != exc.problem else ""
    return f"{problem}{context}"


def read_file(path: Path, display: str | None = None) -> tuple[list[Document], list[Diagnostic]]:
    """Read and parse one file with size, encoding and syntax checks."""
    shown = display or str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return [], [
                Diagnostic(
                    shown, 1, 1, "ARX002", Severity.error,
                    f"file is {size} bytes; resource files are limited to {MAX_FILE_BYTES} bytes",
                )
            ]
        raw = path.read_bytes()
    except OSError as exc:
        return [], [Diagnostic(shown, 1, 1, "ARX002", Severity.error, f"cannot read file: {exc.strerror}")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = len(before) - (before.rfind(b"\n") + 1) + 1
        return [], [
            Diagnostic(
                shown, line, col, "ARX002", Severity.error,
                f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start}",
            )
        ]
    return parse_text(text, shown)


def expand_paths(paths: Sequence[Path]) -> tuple[list[Path], list[Diagnostic]]:
    """Files as given; folders searched recursively for *.yaml / *.yml, in sorted order."""
    files: list[Path] = []
    problems: list[Diagnostic] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.suffix in YAML_SUFFIXES and f.is_file()))
        elif p.exists():
            files.append(p)
        else:
            problems.append(Diagnostic(str(p), 1, 1, "ARX002", Severity.error, "no such file or directory"))
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, problems


def iter_documents(paths: Sequence[Path]) -> Iterator[tuple[Path, list[Document], list[Diagnostic]]]:
    files, problems = expand_paths(paths)
    for d in problems:
        yield Path(d.path), [], [d]
    for f in files:
        docs, diags = read_file(f)
        yield f, docs, diags
