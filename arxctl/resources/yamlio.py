"""Multi-document YAML with line and column for every node (ruamel.yaml round-trip)."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from arxctl.diagnostics import Diagnostic, Severity

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_NODES = 200_000
YAML_SUFFIXES = (".yaml", ".yml")

JsonPath = Sequence[str | int]


@dataclass(slots=True)
class Document:
    """One YAML document: plain data plus the ruamel tree that knows positions."""

    path: str
    index: int
    data: Any
    node: Any
    start_line: int = 1
    text: str = field(default="", repr=False)

    def position(self, json_path: JsonPath, *, key: bool = False) -> tuple[int, int]:
        """1-based (line, col) of the node at `json_path`, or of its key when `key`.

        Falls back to the deepest ancestor that exists (e.g. a missing field points at its parent).
        """
        node = self.node
        line, col = self.start_line, 1
        if isinstance(node, CommentedMap | CommentedSeq) and node.lc.line is not None:
            line, col = node.lc.line + 1, node.lc.col + 1
        for i, part in enumerate(json_path):
            last = i == len(json_path) - 1
            try:
                if isinstance(node, CommentedMap) and part in node:
                    kl, kc = node.lc.key(part)
                    if last and key:
                        return kl + 1, kc + 1
                    vl, vc = node.lc.value(part)
                    line, col = vl + 1, vc + 1
                    node = node[part]
                elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
                    il, ic = node.lc.item(part)
                    line, col = il + 1, ic + 1
                    node = node[part]
                else:
                    break
            except (KeyError, IndexError, TypeError, AttributeError):
                break
        return line, col


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


class _TooLarge(Exception):
    pass


def to_plain(node: Any, budget: list[int] | None = None) -> Any:
    """Convert ruamel containers and scalars into plain JSON-compatible Python values."""
    if budget is None:
        budget = [MAX_NODES]
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooLarge
    if isinstance(node, dict):
        return {str(k): to_plain(v, budget) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [to_plain(v, budget) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, _dt.datetime | _dt.date):
        return node.isoformat()
    if isinstance(node, str):
        return str(node)
    if isinstance(node, bytes):
        return node.decode("utf-8", "replace")
    return str(node)


def _bad_char_position(text: str) -> tuple[int, int, str] | None:
    for offset, ch in enumerate(text):
        code = ord(ch)
        if (code < 0x20 and ch not in "\t\n\r") or code == 0x7F or 0xFFFE <= code <= 0xFFFF:
            before = text[:offset]
            line = before.count("\n") + 1
            col = offset - (before.rfind("\n") + 1) + 1
            return line, col, f"U+{code:04X}"
    return None


def _new_yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    return yaml


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
        for index, node in enumerate(_new_yaml().load_all(text)):
            if node is None:
                continue
            start = node.lc.line + 1 if isinstance(node, CommentedMap | CommentedSeq) else 1
            try:
                data = to_plain(node)
            except _TooLarge:
                return [], [
                    Diagnostic(
                        path, start, 1, "ARX001", Severity.error,
                        f"document has more than {MAX_NODES} nodes (alias expansion?)",
                    )
                ]
            docs.append(Document(path, index, data, node, start, text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        rule = "ARX006" if "duplicate key" in str(exc.problem or "") else "ARX001"
        message = _yaml_message(exc, text, line)
        return [], [Diagnostic(path, line, col, rule, Severity.error, message)]
    except YAMLError as exc:
        return [], [Diagnostic(path, 1, 1, "ARX001", Severity.error, f"YAML error: {exc}".splitlines()[0])]
    except RecursionError:
        return [], [Diagnostic(path, 1, 1, "ARX001", Severity.error, "YAML nesting too deep")]
    return docs, []


def _yaml_message(exc: MarkedYAMLError, text: str, line: int) -> str:
    problem = (exc.problem or exc.context or "YAML syntax error").strip()
    if "\t" in problem or "'\\t'" in problem:
        return "tab character used for indentation; YAML indents with spaces"
    if "duplicate key" in problem:
        return problem.replace("found ", "")
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
