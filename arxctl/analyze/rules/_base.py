"""Helpers shared by the rule modules."""

from __future__ import annotations

import re

import libcst as cst

from arxctl.analyze.python import Hit

_READ = re.compile(
    r"^(get|list|describe|head|lookup|search|scan|query|batch_get|select|filter|check|validate|"
    r"estimate|preview|test|count|read|fetch|download|export|retrieve|info|history|replies)"
)
_DESTRUCTIVE = re.compile(r"^(delete|terminate|remove|purge|destroy|drop|schedule_key_deletion|deregister|wipe|erase)")


def verb_operation(verb: str) -> str:
    """Operation class guessed from a verb, for actions the catalog does not know: read, destructive or write."""
    v = verb.lower()
    if _DESTRUCTIVE.match(v):
        return "destructive"
    if _READ.match(v):
        return "read"
    return "write"


def method_operation(method: str) -> str:
    """Operation class of an HTTP method: GET/HEAD/OPTIONS read, DELETE destructive, others write."""
    m = method.upper()
    if m in ("GET", "HEAD", "OPTIONS"):
        return "read"
    if m == "DELETE":
        return "destructive"
    return "write"


def hit(rule_id: str, node: cst.CSTNode, connector: str, action: str, message: str,
        fallback: str | None = None, **detail: str | None) -> Hit:
    """A connector hit; `fallback` is the operation used when the catalog does not know the action."""
    return Hit(
        rule_id=rule_id, node=node, message=message, connector=connector, action=action,
        fallback_operation=fallback or verb_operation(action.rsplit(".", 1)[-1]),
        detail=tuple(sorted((k, v) for k, v in detail.items() if v is not None)),
    )


def snake(name: str) -> str:
    """`postMessage` -> `post_message`, `BucketAcl` -> `bucket_acl`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
