"""The analysis driver: file discovery, a cheap prefilter, libcst where it matters, a process pool for big trees."""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from arxctl.analyze import dockerfile
from arxctl.analyze.git import GitTree, blob_id, open_tree
from arxctl.analyze.model import Finding, span_sha256
from arxctl.analyze.python import analyze_module
from arxctl.analyze.rules import RULESET, RuleSet, hygiene
from arxctl.errors import InputError
from arxctl.policy.catalog import Catalog, builtin

SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", ".venv", "venv", ".tox", ".nox", "node_modules",
                       ".mypy_cache", ".ruff_cache", ".pytest_cache", "build", "dist", ".eggs", ".arx"})
MAX_FILE_BYTES = 32 * 1024 * 1024
PARALLEL_THRESHOLD = 48

# Cheap byte patterns that can start a hygiene finding (checked on lower-cased bytes where noted).
_TOKENS = re.compile(
    rb"(?:AKIA|ASIA)[0-9A-Z]{16}|xox[abposr]-|gh[pousr]_[0-9A-Za-z]{36}|github_pat_|\bsk-|PRIVATE KEY-----|SSWS "
    rb"|AIza[0-9A-Za-z_-]{35}|sk_live_|://[^/\s:@'\"]+:[^/\s:@'\"]{3,}@|verify(?:_ssl)?\s*=\s*False|CERT_NONE"
    rb"|_create_unverified_context"
)
_SECRET_WORDS = rb"(?:password|passwd|pwd|secret|token|api_?key|apikey|access_?key|private_?key|bearer|credentials?)"
_SECRET_LITERAL = re.compile(_SECRET_WORDS + rb"['\"]?\s*[:=]\s*[rbu]?['\"][^'\"\s]{8}")
_SECRET_LOGGED = re.compile(rb"(?:log\w*|print)\s*\([^\n]*" + _SECRET_WORDS)


def hygiene_candidate(data: bytes) -> bool:
    """True when the bytes can hold a hard-coded secret, disabled TLS check or logged secret."""
    if _TOKENS.search(data):
        return True
    lower = data.lower()
    return bool(_SECRET_LITERAL.search(lower) or _SECRET_LOGGED.search(lower))


@dataclass(slots=True)
class FileResult:
    """What one file gave: its line count and findings (positions and span hashes set)."""

    path: str
    lines: int
    findings: list[Finding]
    blob: str | None = None
    deep: bool = False


@dataclass(slots=True)
class Analysis:
    """The result of analysing a set of paths."""

    root: Path
    files: int = 0
    lines: int = 0
    deep_files: int = 0
    findings: list[Finding] = field(default_factory=list)
    commit: str | None = None
    sources: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- prefilter


def _names_pattern(modules: Iterable[str]) -> re.Pattern[bytes]:
    names = "|".join(sorted(re.escape(m) for m in modules))
    return re.compile(rb"(?<![\w.])(" + names.encode() + rb")\b")


_IMPORT_LINES = re.compile(rb"^[ \t]*(?:from|import)[ \t][^\n]*", re.M)
_MODULE_NAMES = _names_pattern(RULESET.top_modules)


def _dotted(node: ast.AST) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def connector_candidate(tree: ast.AST, rules: RuleSet = RULESET) -> bool:
    """True when some call or annotation, resolved through the file's imports, can start a connector detection."""
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    aliases[a.asname] = a.name
                else:
                    top = a.name.split(".")[0]
                    aliases[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    if not any(q.split(".")[0] in rules.top_modules for q in aliases.values()):
        return False
    for node in ast.walk(tree):
        target: ast.AST | None = None
        if isinstance(node, ast.Call):
            target = node.func
        elif isinstance(node, ast.arg | ast.AnnAssign):
            target = node.annotation
        if target is None:
            continue
        dotted = _dotted(target)
        if dotted is None:
            continue
        head, _, rest = dotted.partition(".")
        resolved = aliases.get(head)
        if resolved is not None and rules.is_entry(f"{resolved}.{rest}" if rest else resolved):
            return True
    return False


def _imported(data: bytes, rules: RuleSet = RULESET) -> set[str]:
    lines = b"\n".join(_IMPORT_LINES.findall(data))
    return {m.group(1).decode() for m in _MODULE_NAMES.finditer(lines)}


def needs_deep(data: bytes) -> tuple[bool, ast.AST | None]:
    """Whether a Python file needs the libcst pass: a connector import that is used, or a hygiene pattern."""
    if hygiene_candidate(data):
        return True, None
    modules = _imported(data)
    if not any(m not in RULESET.needles or RULESET.needles[m].search(data) for m in modules):
        return False, None
    try:
        tree = ast.parse(data)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return True, None
    return connector_candidate(tree), tree


# ---------------------------------------------------------------- one file


def analyze_python(text: str, path: str, catalog: Catalog) -> list[Finding]:
    """Findings for Python source (positions 1-based, end column exclusive)."""
    result = analyze_module(text, catalog, RULESET, extra=(hygiene.check,))
    if result.error is not None:
        line, col, message = result.error
        lines = text.splitlines() or [""]
        line = min(max(line, 1), len(lines))
        end_col = len(lines[line - 1]) + 1
        col = min(max(col, 1), end_col)
        sha = span_sha256(text, line, 1, line, end_col)
        return [Finding("ARXA100", "error", f"cannot parse Python: {message}", path, line, 1, line, end_col, sha)]
    out: list[Finding] = []
    for hit, pos in result.hits:
        sha = span_sha256(text, pos.start_line, pos.start_col, pos.end_line, pos.end_col)
        if hit.connector is None:
            out.append(Finding(hit.rule_id, hit.severity or "warning", hit.message, path, pos.start_line,
                               pos.start_col, pos.end_line, pos.end_col, sha))
            continue
        info = catalog.lookup(hit.action or "")
        operation = info.operation if info else (hit.fallback_operation or "destructive")
        out.append(Finding(
            hit.rule_id, "info", hit.message, path, pos.start_line, pos.start_col, pos.end_line, pos.end_col, sha,
            connector=hit.connector, action=hit.action, operation=operation, in_catalog=info is not None,
            detail=hit.detail,
        ))
    return out


def _decode(data: bytes, path: str) -> tuple[str | None, Finding | None]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        col = len(before) - (before.rfind(b"\n") + 1) + 1
        return None, Finding("ARXA100", "error", f"not UTF-8 text (byte 0x{data[exc.start]:02x})", path, line, col,
                             line, col + 1, "")
    return text, None


def analyze_file(path: Path, display: str, catalog: Catalog) -> FileResult:
    """Read, prefilter and analyse one file."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return FileResult(display, 0, [Finding("ARXA100", "error", f"file larger than {MAX_FILE_BYTES} bytes",
                                                   display, 1, 1, 1, 1, "")])
        data = path.read_bytes()
    except OSError as exc:
        return FileResult(display, 0, [Finding("ARXA100", "error", f"cannot read file: {exc.strerror}",
                                               display, 1, 1, 1, 1, "")])
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    if dockerfile.is_dockerfile(path.name):
        text, problem = _decode(data, display)
        findings = [problem] if problem else dockerfile.analyze(text or "", display)
        return FileResult(display, lines, findings, blob_id(data) if findings else None, True)
    deep, _ = needs_deep(data)
    if not deep:
        return FileResult(display, lines, [])
    text, problem = _decode(data, display)
    findings = [problem] if problem else analyze_python(text or "", display, catalog)
    return FileResult(display, lines, findings, blob_id(data) if findings else None, True)


# ---------------------------------------------------------------- many files


def discover(paths: Sequence[Path]) -> Iterator[Path]:
    """Python files and Dockerfiles under the paths, in sorted order; hidden and virtualenv folders skipped."""
    for p in paths:
        if p.is_file():
            yield p
            continue
        for dirpath, dirnames, filenames in os.walk(p):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
            for name in sorted(filenames):
                if name.endswith(".py") or dockerfile.is_dockerfile(name):
                    yield Path(dirpath) / name


def source_root(paths: Sequence[Path]) -> tuple[Path, GitTree | None]:
    """Where displayed paths are relative to: the git work tree, else the current directory or the common parent."""
    resolved = [p.resolve() for p in paths]
    tree = open_tree(resolved[0]) if resolved else None
    if tree is not None and all(_under(p, tree.root) for p in resolved):
        return tree.root, tree
    cwd = Path.cwd().resolve()
    if all(_under(p, cwd) for p in resolved):
        return cwd, None
    common = Path(os.path.commonpath([str(p if p.is_dir() else p.parent) for p in resolved]))
    return common, None


def _under(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _display(path: Path, root: Path) -> str:
    return path.resolve().relative_to(root).as_posix()


_WORKER_CATALOG: Catalog | None = None


def _init_worker(catalog: Catalog) -> None:
    global _WORKER_CATALOG
    _WORKER_CATALOG = catalog


def _work(task: tuple[str, str]) -> FileResult:
    assert _WORKER_CATALOG is not None
    return analyze_file(Path(task[0]), task[1], _WORKER_CATALOG)


def _results(tasks: list[tuple[str, str]], catalog: Catalog, workers: int) -> Iterator[FileResult]:
    if workers <= 1 or len(tasks) < PARALLEL_THRESHOLD:
        for path, display in tasks:
            yield analyze_file(Path(path), display, catalog)
        return
    import multiprocessing

    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    ordered = sorted(tasks, key=lambda t: _size(t[0]), reverse=True)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(catalog,)) as pool:
        yield from pool.map(_work, ordered, chunksize=4)


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def analyze_paths(paths: Sequence[Path], catalog: Catalog | None = None, workers: int | None = None) -> Analysis:
    """Analyse files and folders; findings sorted by path and position, pinned to git when in a work tree."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise InputError(f"no such file or directory: {', '.join(missing)}")
    catalog = catalog or builtin()
    root, tree = source_root(paths)
    unique: dict[str, str] = {}
    for p in discover(paths):
        unique.setdefault(_display(p, root), str(p))
    analysis = Analysis(root=root, commit=tree.commit if tree else None)
    tasks = [(path, display) for display, path in unique.items()]
    for result in _results(tasks, catalog, workers if workers is not None else default_workers()):
        analysis.files += 1
        analysis.lines += result.lines
        analysis.deep_files += int(result.deep)
        analysis.sources.append(result.path)
        for f in result.findings:
            analysis.findings.append(_pin(f, result.blob, tree))
    analysis.findings.sort(key=lambda f: (f.path, f.start_line, f.start_col, f.rule_id, f.action or ""))
    return analysis


def _pin(f: Finding, blob: str | None, tree: GitTree | None) -> Finding:
    if tree is None or tree.commit is None:
        return f.with_(blob=blob)
    head = tree.head_blob(f.path)
    return f.with_(commit=tree.commit, blob=blob, committed=head is not None and head == blob)


def analyze_source(text: str, path: str = "snippet.py", catalog: Catalog | None = None) -> list[Finding]:
    """Findings for one in-memory source (Python, or a Dockerfile by name); used by tests and tools."""
    catalog = catalog or builtin()
    if dockerfile.is_dockerfile(Path(path).name):
        return dockerfile.analyze(text, path)
    return analyze_python(text, path, catalog)


__all__ = ["Analysis", "FileResult", "analyze_file", "analyze_paths", "analyze_source", "default_workers",
           "discover", "needs_deep"]
