"""Short-lived signed handles: what an agent holds instead of a connector credential.

A handle is `arxh1.<payload>.<mac>`: base64url canonical JSON `{id, agent, connector, iat, exp}` and its
HMAC-SHA256 under a key derived from the platform key file. The platform checks every use against the
signature, the expiry, the revocation list (the `handles` table), the agent's status and the credential behind
it, so a revocation or a suspension takes effect on the next use. The token itself is printed once at issue
and never stored or recorded.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import sqlite3
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from hashlib import sha256
from typing import Any

import orjson

from arxctl.canonical import canonical_bytes
from arxctl.clock import format_ts, now, parse_ts
from arxctl.durations import format_duration, parse_duration
from arxctl.errors import ArxError, InputError, NotFoundError
from arxctl.registry import credentials
from arxctl.registry.lifecycle import ACTIVE, DECOMMISSIONED, agent_status, need_reason, record, write
from arxctl.store.sqlite import Store

PREFIX = "arxh1"
MAX_TTL = timedelta(hours=1)
DEFAULT_TTL = timedelta(minutes=15)
MAX_TOKEN_CHARS = 4096
_COLUMNS = "id, agent, connector, issued_ts, expires_ts, issued_by, revoked_ts, revoked_by, revoke_reason"


class HandleRejected(ArxError):
    """A handle failed its check on use: exit code 1, with the reason."""

    exit_code = 1


@dataclass(frozen=True, slots=True)
class HandleInfo:
    """A handle's record: who holds it, for which connector, until when, and whether it was revoked."""

    id: str
    agent: str
    connector: str
    issued_at: str
    expires_at: str
    issued_by: str
    revoked_at: str | None
    revoked_by: str | None
    revoke_reason: str | None

    def state(self, at: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if at >= parse_ts(self.expires_at) else "live"

    def to_dict(self, at: datetime) -> dict[str, Any]:
        return {**asdict(self), "state": self.state(at)}


@dataclass(frozen=True, slots=True)
class HandleCheck:
    """The outcome of checking a handle on use; `reason` is `ok` or why it was refused."""

    valid: bool
    reason: str
    id: str | None = None
    agent: str | None = None
    connector: str | None = None
    expires_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, f"{PREFIX}.{payload}".encode("ascii"), sha256).digest())


def _rows(conn: sqlite3.Connection, where: str = "", args: tuple[Any, ...] = ()) -> list[HandleInfo]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM handles {where} ORDER BY issued_ts, id", args).fetchall()
    return [HandleInfo(*r) for r in rows]


def parse_ttl(ttl: str | timedelta) -> timedelta:
    """A handle TTL: above zero and at most one hour."""
    try:
        delta = ttl if isinstance(ttl, timedelta) else parse_duration(ttl)
    except ValueError as exc:
        raise InputError(f"--ttl: {exc}") from None
    if delta > MAX_TTL:
        raise InputError(f"--ttl {format_duration(delta)} exceeds the 1h maximum for a handle")
    return delta


def issue(store: Store, *, agent: str, connector: str, actor: str, reason: str, ttl: str | timedelta = DEFAULT_TTL,
          at: datetime | None = None) -> tuple[HandleInfo, str]:
    """Issue a handle to an active agent for a connector it declares and the platform holds a credential for.

    Returns the handle's record and the token (the only time the token exists outside the agent).
    """
    reason = need_reason(reason, "issuing a handle")
    delta = parse_ttl(ttl)
    moment = at or now()
    keys = credentials.platform_keys(store.directory)
    ts, expires = format_ts(moment), format_ts(moment + delta)
    handle_id = "h-" + secrets.token_hex(8)
    with write(store) as conn:
        status = agent_status(conn, agent)
        if status != ACTIVE:
            raise InputError(f"agent '{agent}' is {status}: no handle is issued")
        declared = {c.get("name") for c in credentials.agent_doc(conn, agent)["spec"].get("connectors") or []}
        if connector not in declared:
            raise InputError(f"agent '{agent}' does not declare connector '{connector}' in its manifest")
        if credentials.available(conn, connector, agent) is None:
            raise InputError(f"the platform holds no credential for connector '{connector}' (store one with "
                             f"`arxctl credentials set {connector}`)")
        conn.execute(
            "INSERT INTO handles (id, agent, connector, issued_ts, expires_ts, issued_by) VALUES (?,?,?,?,?,?)",
            (handle_id, agent, connector, ts, expires, actor),
        )
        record(conn, "handle.issued", agent, actor, {
            "id": handle_id, "connector": connector, "expires_at": expires, "ttl": format_duration(delta),
            "reason": reason,
        }, ts)
        info = _rows(conn, "WHERE id = ?", (handle_id,))[0]
    payload = _b64(canonical_bytes({"agent": agent, "connector": connector, "exp": expires, "iat": ts,
                                    "id": handle_id}))
    return info, f"{PREFIX}.{payload}.{_mac(keys.handles, payload)}"


def _claims(keys: credentials.PlatformKeys, token: str) -> tuple[dict[str, Any] | None, str]:
    token = token.strip()
    if len(token) > MAX_TOKEN_CHARS:
        return None, "malformed"
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        return None, "malformed"
    if not hmac.compare_digest(_mac(keys.handles, parts[1]), parts[2]):
        return None, "bad-signature"
    try:
        claims = orjson.loads(_unb64(parts[1]))
    except (ValueError, orjson.JSONDecodeError):
        return None, "malformed"
    if not isinstance(claims, dict) or not all(isinstance(claims.get(k), str) for k in ("id", "agent", "connector",
                                                                                          "exp", "iat")):
        return None, "malformed"
    return claims, "ok"


def check(store: Store, token: str, *, at: datetime | None = None) -> HandleCheck:
    """Check a handle on use: signature, expiry, revocation, the agent's status and the credential behind it."""
    moment = at or now()
    if not credentials.key_path(store.directory).exists():
        return HandleCheck(False, "bad-signature")
    claims, reason = _claims(credentials.platform_keys(store.directory, create=False), token)
    if claims is None:
        return HandleCheck(False, reason)
    conn = store.conn
    found = _rows(conn, "WHERE id = ?", (claims["id"],))
    ident = {"id": claims["id"], "agent": claims["agent"], "connector": claims["connector"],
             "expires_at": claims["exp"]}
    if not found:
        return HandleCheck(False, "unknown-handle", **ident)
    info = found[0]
    if (info.agent, info.connector, info.expires_at) != (claims["agent"], claims["connector"], claims["exp"]):
        return HandleCheck(False, "unknown-handle", **ident)
    if info.revoked_at is not None:
        return HandleCheck(False, "revoked", **ident)
    if moment >= parse_ts(info.expires_at):
        return HandleCheck(False, "expired", **ident)
    if moment < parse_ts(info.issued_at):
        return HandleCheck(False, "not-yet-valid", **ident)
    try:
        status = agent_status(conn, info.agent)
    except NotFoundError:
        status = "unknown"
    if status != ACTIVE:
        return HandleCheck(False, "agent-decommissioned" if status == DECOMMISSIONED else f"agent-{status}", **ident)
    if credentials.available(conn, info.connector, info.agent) is None:
        return HandleCheck(False, "no-credential", **ident)
    return HandleCheck(True, "ok", **ident)


def redeem(store: Store, token: str, *, at: datetime | None = None) -> bytes:
    """For the platform-side connector: check the handle and return the credential it stands for."""
    result = check(store, token, at=at)
    if not result.valid:
        raise HandleRejected(f"handle refused: {result.reason}")
    assert result.connector is not None and result.agent is not None
    return credentials.secret_for(store, result.connector, result.agent)


def _revoke(conn: sqlite3.Connection, info: HandleInfo, actor: str, reason: str, ts: str) -> None:
    conn.execute("UPDATE handles SET revoked_ts = ?, revoked_by = ?, revoke_reason = ? WHERE id = ?",
                 (ts, actor, reason, info.id))
    record(conn, "handle.revoked", info.agent, actor,
           {"id": info.id, "connector": info.connector, "expires_at": info.expires_at, "reason": reason}, ts)


def revoke(store: Store, handle_id: str, *, actor: str, reason: str, at: datetime | None = None) -> HandleInfo:
    """Put a handle on the revocation list: its next use is refused."""
    reason = need_reason(reason, "revoking a handle")
    moment = at or now()
    with write(store) as conn:
        found = _rows(conn, "WHERE id = ?", (handle_id,))
        if not found:
            raise NotFoundError(f"no handle '{handle_id}'")
        info = found[0]
        if info.state(moment) != "live":
            raise InputError(f"handle '{handle_id}' is already {info.state(moment)}")
        _revoke(conn, info, actor, reason, format_ts(moment))
        return _rows(conn, "WHERE id = ?", (handle_id,))[0]


def revoke_all(conn: sqlite3.Connection, agent: str, *, actor: str, reason: str, at: datetime) -> list[str]:
    """For decommissioning: revoke every live handle of the agent; returns their ids."""
    live = [h for h in _rows(conn, "WHERE agent = ? AND revoked_ts IS NULL", (agent,)) if h.state(at) == "live"]
    for info in live:
        _revoke(conn, info, actor, reason, format_ts(at))
    return [h.id for h in live]


def list_handles(store: Store | sqlite3.Connection, *, agent: str | None = None) -> list[HandleInfo]:
    conn = store if isinstance(store, sqlite3.Connection) else store.conn
    return _rows(conn, "WHERE agent = ?", (agent,)) if agent else _rows(conn)


def revocation_list(store: Store, *, at: datetime | None = None) -> list[HandleInfo]:
    """Revoked handles that have not expired yet: what a connector caching handles must refuse."""
    moment = at or now()
    return [h for h in _rows(store.conn, "WHERE revoked_ts IS NOT NULL") if moment < parse_ts(h.expires_at)]


def open_handles(conn: sqlite3.Connection, agent: str, at: datetime) -> list[str]:
    """Ids of the agent's live handles at `at` (the orphan check wants none)."""
    return [h.id for h in _rows(conn, "WHERE agent = ? AND revoked_ts IS NULL", (agent,)) if h.state(at) == "live"]
