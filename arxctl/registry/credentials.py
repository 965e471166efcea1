"""Connector credentials held by the platform, encrypted at rest; agents only ever get short-lived handles.

A credential belongs to a connector, either shared (every agent declaring the connector reaches it through a
handle) or bound to one agent (deleted when that agent is decommissioned). Secrets are sealed with AES-256-GCM
under a key derived from `<state>/platform.key` (0600); the chain and every output carry only a keyed
fingerprint. Rotation stores a new secret under the same identity; termination (decommission) removes it.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import os
import secrets
import sqlite3
from dataclasses import asdict, dataclass
from datetime import datetime
from hashlib import sha256
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from arxctl.canonical import canonical_bytes
from arxctl.clock import format_ts, now
from arxctl.errors import InputError, NotFoundError, StateError
from arxctl.policy.catalog import Catalog
from arxctl.registry.lifecycle import connection, need_reason, record, require_live, write
from arxctl.store.sqlite import Store

KEY_FILE = "platform.key"
KEY_BYTES = 32
MAX_SECRET_BYTES = 64 * 1024
SHARED = ""


@dataclass(frozen=True, slots=True)
class PlatformKeys:
    """Keys derived from the platform key file: one encrypts credentials, one signs handles, one fingerprints."""

    encryption: bytes
    handles: bytes
    fingerprint: bytes

    def fingerprint_of(self, secret: bytes) -> str:
        """A keyed fingerprint: tells two secrets apart without letting anyone test guesses offline."""
        return "hmac-sha256:" + hmac.new(self.fingerprint, secret, sha256).hexdigest()[:32]


_DERIVED: dict[tuple[str, int, int, int], PlatformKeys] = {}


def _derive(master: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"arxctl/" + label).derive(master)


def key_path(state_dir: Path) -> Path:
    return state_dir / KEY_FILE


def platform_keys(state_dir: Path, *, create: bool = True) -> PlatformKeys:
    """Read (or first create, 0600, atomically) the platform key file and derive the working keys; derived keys
    are reused while the file's inode, size and mtime are unchanged."""
    path = key_path(state_dir)
    if not path.exists():
        if not create:
            raise StateError(f"no platform key at {path}: no credential was ever stored here")
        _create_key(path)
    info = path.stat()
    if os.name == "posix" and info.st_mode & 0o077:
        raise StateError(f"{path} is readable by other users; run `chmod 600 {path}`")
    key = (str(path), info.st_ino, info.st_mtime_ns, info.st_size)
    cached = _DERIVED.get(key)
    if cached is not None:
        return cached
    try:
        master = base64.b64decode(path.read_text(encoding="ascii").strip(), validate=True)
    except (OSError, ValueError) as exc:
        raise StateError(f"{path}: cannot read the platform key: {exc}") from None
    if len(master) != KEY_BYTES:
        raise StateError(f"{path}: the platform key must be {KEY_BYTES} bytes, found {len(master)}")
    derived = PlatformKeys(_derive(master, b"credentials/v1"), _derive(master, b"handles/v1"),
                           _derive(master, b"fingerprint/v1"))
    if len(_DERIVED) >= 16:
        _DERIVED.clear()
    _DERIVED[key] = derived
    return derived


def _create_key(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temp, path)
    finally:
        temp.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class CredentialInfo:
    """What may be shown about a stored credential: never the secret."""

    connector: str
    agent: str | None
    version: int
    fingerprint: str
    created_at: str
    updated_at: str
    updated_by: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _aad(connector: str, agent: str, version: int) -> bytes:
    return canonical_bytes(["arxctl-credential", connector, agent, version])


def _info(row: tuple[Any, ...]) -> CredentialInfo:
    return CredentialInfo(row[0], row[1] or None, row[2], row[3], row[4], row[5], row[6])


_INFO = "connector, agent, version, fingerprint, created_ts, updated_ts, updated_by"


def _find(conn: sqlite3.Connection, connector: str, agent: str) -> CredentialInfo | None:
    row = conn.execute(f"SELECT {_INFO} FROM credentials WHERE connector = ? AND agent = ?",
                       (connector, agent)).fetchone()
    return _info(row) if row else None


def list_credentials(store: Store | sqlite3.Connection, *, agent: str | None = None) -> list[CredentialInfo]:
    """Stored credentials (shared and agent-bound), or one agent's bound ones."""
    where, args = ("WHERE agent = ?", (agent,)) if agent else ("", ())
    rows = connection(store).execute(f"SELECT {_INFO} FROM credentials {where} ORDER BY connector, agent", args)
    return [_info(r) for r in rows]


def read_secret(text_or_bytes: bytes) -> bytes:
    """A secret as given on stdin or in a file: one trailing newline dropped, never empty, at most 64 KiB."""
    secret = text_or_bytes.removesuffix(b"\n").removesuffix(b"\r")
    if not secret:
        raise InputError("the secret is empty")
    if len(secret) > MAX_SECRET_BYTES:
        raise InputError(f"the secret is {len(secret)} bytes; at most {MAX_SECRET_BYTES}")
    return secret


def _check_target(conn: sqlite3.Connection, connector: str, agent: str | None, catalog: Catalog) -> None:
    if catalog.connector(connector) is None:
        raise InputError(f"unknown connector '{connector}': not in the connector catalog")
    if agent is not None:
        require_live(conn, agent, "store a credential for")
        doc = agent_doc(conn, agent)
        declared = {c.get("name") for c in doc["spec"].get("connectors") or []}
        if connector not in declared:
            raise InputError(f"agent '{agent}' does not declare connector '{connector}' in its manifest")


def agent_doc(conn: sqlite3.Connection, agent: str) -> dict[str, Any]:
    """The agent's current manifest."""
    row = conn.execute(
        "SELECT r.doc FROM heads h JOIN resources r ON r.kind = h.kind AND r.name = h.name AND r.version = h.version "
        "WHERE h.kind = 'Agent' AND h.name = ?", (agent,),
    ).fetchone()
    if row is None:
        raise NotFoundError(f"no agent '{agent}'")
    return orjson.loads(row[0])


def _store(conn: sqlite3.Connection, keys: PlatformKeys, connector: str, agent: str, version: int, secret: bytes,
           ts: str, actor: str, created: str) -> str:
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(keys.encryption).encrypt(nonce, secret, _aad(connector, agent, version))
    fingerprint = keys.fingerprint_of(secret)
    conn.execute(
        "INSERT INTO credentials (connector, agent, version, nonce, ciphertext, fingerprint, created_ts, updated_ts, "
        "updated_by) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (connector, agent) DO UPDATE SET "
        "version = excluded.version, nonce = excluded.nonce, ciphertext = excluded.ciphertext, "
        "fingerprint = excluded.fingerprint, updated_ts = excluded.updated_ts, updated_by = excluded.updated_by",
        (connector, agent, version, nonce, sealed, fingerprint, created, ts, actor),
    )
    return fingerprint


def set_credential(store: Store, connector: str, secret: bytes, *, actor: str, reason: str, catalog: Catalog,
                   agent: str | None = None, at: datetime | None = None) -> CredentialInfo:
    """Store a new credential for a connector (shared, or bound to one agent); an existing one needs `rotate`."""
    reason = need_reason(reason, "storing a credential")
    secret = read_secret(secret)
    keys = platform_keys(store.directory)
    ts = format_ts(at or now())
    bound = agent or SHARED
    with write(store) as conn:
        _check_target(conn, connector, agent, catalog)
        if _find(conn, connector, bound) is not None:
            raise InputError(f"a credential for {_label(connector, agent)} already exists; use "
                             "`arxctl credentials rotate` to replace it under the same identity")
        fingerprint = _store(conn, keys, connector, bound, 1, secret, ts, actor, ts)
        record(conn, "credential.set", agent, actor,
               {"connector": connector, "agent": agent, "version": 1, "fingerprint": fingerprint, "reason": reason},
               ts)
        found = _find(conn, connector, bound)
        assert found is not None
        return found


def rotate(store: Store, connector: str, secret: bytes, *, actor: str, reason: str, agent: str | None = None,
           at: datetime | None = None) -> CredentialInfo:
    """Replace a credential's secret under the same identity: handles already issued keep working."""
    reason = need_reason(reason, "rotating a credential")
    secret = read_secret(secret)
    keys = platform_keys(store.directory)
    ts = format_ts(at or now())
    bound = agent or SHARED
    with write(store) as conn:
        old = _find(conn, connector, bound)
        if old is None:
            raise NotFoundError(f"no credential for {_label(connector, agent)} (store one with "
                                "`arxctl credentials set`)")
        if agent is not None:
            require_live(conn, agent, "rotate a credential of")
        fingerprint = _store(conn, keys, connector, bound, old.version + 1, secret, ts, actor, old.created_at)
        if fingerprint == old.fingerprint:
            raise InputError(f"the new secret for {_label(connector, agent)} is the same as the current one")
        record(conn, "credential.rotated", agent, actor, {
            "connector": connector, "agent": agent, "version": old.version + 1, "fingerprint": fingerprint,
            "previous_fingerprint": old.fingerprint, "reason": reason,
        }, ts)
        found = _find(conn, connector, bound)
        assert found is not None
        return found


def _delete(conn: sqlite3.Connection, info: CredentialInfo, actor: str, reason: str, ts: str) -> None:
    conn.execute("DELETE FROM credentials WHERE connector = ? AND agent = ?", (info.connector, info.agent or SHARED))
    record(conn, "credential.deleted", info.agent, actor, {
        "connector": info.connector, "agent": info.agent, "version": info.version, "fingerprint": info.fingerprint,
        "reason": reason,
    }, ts)


def delete(store: Store, connector: str, *, actor: str, reason: str, agent: str | None = None,
           at: datetime | None = None) -> CredentialInfo:
    """Remove a stored credential (the ciphertext is deleted; the chain keeps its fingerprint)."""
    reason = need_reason(reason, "deleting a credential")
    ts = format_ts(at or now())
    with write(store) as conn:
        info = _find(conn, connector, agent or SHARED)
        if info is None:
            raise NotFoundError(f"no credential for {_label(connector, agent)}")
        _delete(conn, info, actor, reason, ts)
        return info


def delete_for_agent(conn: sqlite3.Connection, agent: str, *, actor: str, reason: str, at: datetime) -> list[str]:
    """For decommissioning: delete every credential bound to the agent; returns their connectors."""
    found = list_credentials(conn, agent=agent)
    for info in found:
        _delete(conn, info, actor, reason, format_ts(at))
    return [info.connector for info in found]


def available(conn: sqlite3.Connection, connector: str, agent: str) -> CredentialInfo | None:
    """The credential a handle of `agent` for `connector` resolves to: the agent's own, else the shared one."""
    return _find(conn, connector, agent) or _find(conn, connector, SHARED)


def secret_for(store: Store, connector: str, agent: str) -> bytes:
    """Decrypt the credential an agent's handle resolves to, for the platform-side connector only."""
    conn = store.conn
    bound = agent if _find(conn, connector, agent) is not None else SHARED
    row = conn.execute("SELECT version, nonce, ciphertext FROM credentials WHERE connector = ? AND agent = ?",
                       (connector, bound)).fetchone()
    if row is None:
        raise NotFoundError(f"no credential for {_label(connector, agent)}")
    keys = platform_keys(store.directory, create=False)
    try:
        return AESGCM(keys.encryption).decrypt(row[1], row[2], _aad(connector, bound, row[0]))
    except InvalidTag:
        raise StateError(f"the credential for {_label(connector, bound or None)} does not decrypt: "
                         f"{key_path(store.directory)} is not the key it was stored with, or it was altered") from None


def _label(connector: str, agent: str | None) -> str:
    return f"connector '{connector}' bound to agent '{agent}'" if agent else f"connector '{connector}' (shared)"
