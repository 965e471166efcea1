"""Processes (subprocess, os.system, os.popen, os.exec*, os.spawn*, asyncio subprocesses, os.kill): connector shell."""

from __future__ import annotations

import shlex

import libcst as cst

from arxctl.analyze.python import Ctx, Outcome
from arxctl.analyze.rules._base import hit
from arxctl.analyze.values import Str, known_text

RULE_ID = "ARXA111"
DESCRIPTION = "Process execution: shell.process.run (destructive) unless the command is proven read-only"
FAMILIES = ("shell",)
MODULES = ("subprocess", "os", "asyncio", "pty")
_EXEC = tuple(f"os.{n}" for n in (
    "system", "popen", "execl", "execle", "execlp", "execlpe", "execv", "execve", "execvp", "execvpe",
    "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe", "posix_spawn",
    "posix_spawnp",
))
ENTRY = (
    "subprocess.run", "subprocess.call", "subprocess.check_call", "subprocess.check_output", "subprocess.Popen",
    "subprocess.getoutput", "subprocess.getstatusoutput", *_EXEC, "os.kill", "os.killpg",
    "asyncio.create_subprocess_exec", "asyncio.create_subprocess_shell", "pty.spawn",
)
NEEDLES = {
    "os": rb"\b(?:system|popen|exec[lv]p?e?|spawn[lv]p?e?|posix_spawnp?|kill|killpg)\b",
    "asyncio": rb"create_subprocess_",
    "pty": rb"\bspawn\b",
}
_SHELL_ALWAYS = frozenset({"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput",
                           "asyncio.create_subprocess_shell"})

# Programs (and for multi-purpose tools, subcommands) that only read.
READ_ONLY: dict[str, frozenset[str] | None] = {
    "ls": None, "cat": None, "head": None, "tail": None, "wc": None, "grep": None, "ps": None, "df": None,
    "du": None, "whoami": None, "id": None, "uname": None, "hostname": None, "date": None, "echo": None,
    "pwd": None, "uptime": None, "stat": None, "file": None, "which": None, "nslookup": None, "dig": None,
    "git": frozenset({"status", "log", "diff", "show", "rev-parse", "ls-files", "blame", "describe"}),
    "kubectl": frozenset({"get", "describe", "logs", "version", "top", "explain"}),
}
_META = set(";|&$><`(){}\n*?!~")


def read_only(argv: list[str]) -> bool:
    """True when argv runs an allow-listed read-only program (and subcommand)."""
    if not argv:
        return False
    program = argv[0].rsplit("/", 1)[-1]
    if program not in READ_ONLY:
        return False
    subs = READ_ONLY[program]
    if subs is None:
        return True
    rest = [a for a in argv[1:] if not a.startswith("-")]
    return bool(rest) and rest[0] in subs


def _argv(ctx: Ctx, call: cst.Call, shell: bool) -> list[str] | None:
    node = ctx.arg(call, 0, "args")
    if isinstance(node, cst.List | cst.Tuple):
        out = []
        for el in node.elements:
            t = known_text(ctx.value(el.value))
            if t is None or isinstance(el, cst.StarredElement):
                return None
            out.append(t)
        return out
    s = ctx.string(node)
    command = known_text(s) if isinstance(s, Str) else None
    if command is None:
        return None
    if shell and _META & set(command):
        return None
    try:
        return shlex.split(command) if shell or " " in command else [command]
    except ValueError:
        return None


def construct(qname: str, call: cst.Call | None, ctx: Ctx) -> Outcome | None:
    if call is None:
        return None
    if qname in ("os.kill", "os.killpg"):
        return None, [hit(RULE_ID, call, "shell", "shell.process.kill", f"{qname} signals a process")]
    if qname.startswith(("os.exec", "os.spawn", "os.posix_spawn")) or qname in ("asyncio.create_subprocess_exec",
                                                                              "pty.spawn"):
        args = [known_text(ctx.value(a.value)) for a in call.args if a.keyword is None and not a.star]
        program = args[0] if args else None
        argv = [a for a in args[1:] if a is not None] if qname.startswith("os.exec") else [
            a for a in args if a is not None]
        if qname == "asyncio.create_subprocess_exec":
            argv = [a for a in args if a is not None]
        proven = None not in args and read_only(argv)
        return _shell(call, qname, proven, program)
    shell = qname in _SHELL_ALWAYS or known_text(ctx.arg_value(call, None, "shell")) == "True" or _true(ctx, call)
    argv = _argv(ctx, call, shell)
    proven = argv is not None and read_only(argv)
    return _shell(call, qname, proven, argv[0] if argv else None)


def _true(ctx: Ctx, call: cst.Call) -> bool:
    node = ctx.arg(call, None, "shell")
    return isinstance(node, cst.Name) and node.value == "True"


def _shell(call: cst.Call, qname: str, proven: bool, program: str | None) -> Outcome:
    if proven:
        return None, [hit(RULE_ID, call, "shell", "shell.process.read_only",
                          f"{qname} runs read-only {program}", program=program)]
    what = f" {program}" if program else " a command that is not proven read-only"
    return None, [hit(RULE_ID, call, "shell", "shell.process.run", f"{qname} runs{what}", "destructive",
                      program=program)]
