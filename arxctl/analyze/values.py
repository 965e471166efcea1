"""Abstract values the Python analyzer tracks: imported symbols, partial strings, SDK objects, dicts."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

UNKNOWN_LABEL = "unresolved"


@dataclass(frozen=True, slots=True)
class Sym:
    """A name bound by an import, as a dotted qualified name (`boto3.client`)."""

    qname: str


@dataclass(frozen=True, slots=True)
class Str:
    """A string whose parts are known text or None where the value is not known statically."""

    parts: tuple[str | None, ...]

    @property
    def known(self) -> str | None:
        return "".join(p for p in self.parts if p is not None) if None not in self.parts else None

    def glob(self) -> str:
        """The text with each unknown part replaced by `*`."""
        return "".join("*" if p is None else p for p in self.parts)

    def prefix(self) -> str:
        """The known text before the first unknown part."""
        out = []
        for p in self.parts:
            if p is None:
                break
            out.append(p)
        return "".join(out)

    def __add__(self, other: Str) -> Str:
        return Str(_merge(self.parts + other.parts))


def _merge(parts: tuple[str | None, ...]) -> tuple[str | None, ...]:
    out: list[str | None] = []
    for p in parts:
        if p == "":
            continue
        if out and p is not None and out[-1] is not None:
            out[-1] = out[-1] + p  # type: ignore[operator]
        elif out and p is None and out[-1] is None:
            continue
        else:
            out.append(p)
    return tuple(out) if out else ("",)


def text(value: str) -> Str:
    return Str((value,))


@dataclass(frozen=True, slots=True)
class Obj:
    """An SDK object: `family` names the rule module that owns it, `kind` what it is, `props` what is known."""

    family: str
    kind: str
    props: tuple[tuple[str, Any], ...] = ()

    def get(self, key: str, default: Any = None) -> Any:
        for k, v in self.props:
            if k == key:
                return v
        return default

    def with_(self, kind: str | None = None, **props: Any) -> Obj:
        merged = dict(self.props)
        merged.update(props)
        return Obj(self.family, kind or self.kind, tuple(sorted(merged.items())))


def obj(family: str, kind: str, **props: Any) -> Obj:
    return Obj(family, kind, tuple(sorted(props.items())))


@dataclass(frozen=True, slots=True)
class DictV:
    """A dict literal: string keys to evaluated values (None where unknown)."""

    items: tuple[tuple[str, Any], ...] = field(default=())

    def get(self, key: str) -> Any:
        for k, v in self.items:
            if k == key:
                return v
        return None


Value = Sym | Str | Obj | DictV


def known_text(value: Any) -> str | None:
    return value.known if isinstance(value, Str) else None


_HOST_CHARS = re.compile(r"^[A-Za-z0-9.*-]+$")


@dataclass(frozen=True, slots=True)
class Url:
    """What is known of a URL: host (with `unresolved` for unknown labels) and path (with `*`)."""

    scheme: str
    host: str | None
    path: str
    resolved: bool


def parse_url(value: Str | None) -> Url:
    """Split a partial string into scheme, host and path; unknown host parts become `unresolved` labels."""
    if value is None:
        return Url("", None, "", False)
    glob = value.glob()
    if "://" not in glob:
        return Url("", None, glob, value.known is not None)
    try:
        parts = urlsplit(glob.replace("*", "\x00"))
    except ValueError:
        return Url("", None, "", False)
    host = (parts.hostname or "").replace("\x00", UNKNOWN_LABEL)
    path = parts.path.replace("\x00", "*") or "/"
    if not host or not _HOST_CHARS.match(host):
        return Url(parts.scheme, None, path, False)
    return Url(parts.scheme.replace("\x00", ""), host, path, UNKNOWN_LABEL not in host)
