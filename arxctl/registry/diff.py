"""A small structural diff between two JSON documents, for rollback records and `agents history`."""

from __future__ import annotations

from typing import Any


def diff(old: Any, new: Any, path: str = "$") -> list[dict[str, Any]]:
    """Changes as [{op: add|remove|replace, path, old?, new?}], deterministic order."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[dict[str, Any]] = []
        for key in sorted(set(old) | set(new)):
            sub = f"{path}.{key}"
            if key not in old:
                out.append({"op": "add", "path": sub, "new": new[key]})
            elif key not in new:
                out.append({"op": "remove", "path": sub, "old": old[key]})
            else:
                out.extend(diff(old[key], new[key], sub))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            out.extend(diff(a, b, f"{path}[{i}]"))
        return out
    if old == new and type(old) is type(new):
        return []
    return [{"op": "replace", "path": path, "old": old, "new": new}]
