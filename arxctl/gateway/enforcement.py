"""What the gateway enforces, loaded whole from the embedded state or the operator's bundle and swapped atomically.

A `Snapshot` is one consistent view: the engine's state (agents, policies, catalog, grants, approved calls), the
handles it accepts and the credentials behind them. Requests read whichever snapshot is current when they start;
a reload builds the next one on a background thread and replaces the reference in one assignment, so nothing
waits and nothing is dropped. The watcher polls every 50 ms (SQLite's `data_version` for the state, the file's
identity for a mounted bundle), so revocations and suspensions apply well inside a second; expiries (handles,
grants, approvals) are checked against the clock on every call. A state or bundle that cannot be loaded leaves a
snapshot that denies everything: nothing is ever allowed without a valid state.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from arxctl.clock import format_ts, now, parse_ts
from arxctl.errors import ArxError
from arxctl.policy.engine import ApprovedCall, EngineState, SessionWindow
from arxctl.registry import credentials as vault_keys
from arxctl.registry.credentials import PlatformKeys
from arxctl.registry.handles import HandleCheck
from arxctl.registry.handles import _claims as handle_claims
from arxctl.store.sqlite import DB_NAME, Store

POLL_S = 0.05
RETRY_FAILED_S = 1.0
SUSPENDED = "suspended"


@dataclass(frozen=True, slots=True)
class HandleRow:
    """An issued handle as the state records it (the token itself is never stored)."""

    id: str
    agent: str
    connector: str
    expires_at: str
    revoked: bool


@dataclass(frozen=True, slots=True)
class CredentialRef:
    """Which credential a handle resolves to; the secret is fetched only when a call is made."""

    connector: str
    agent: str
    version: int
    fingerprint: str
    path: Path | None = None


@dataclass(frozen=True, slots=True)
class AgentDoc:
    """An agent's manifest and status, for live drift."""

    doc: Mapping[str, Any]
    status: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One consistent view of what the gateway enforces; replaced whole on every reload, never changed."""

    source: str
    revision: str
    engine: EngineState | None
    keys: PlatformKeys | None
    handles: Mapping[str, HandleRow] | None
    revoked: frozenset[str]
    credentials: Mapping[tuple[str, str], CredentialRef]
    agents: Mapping[str, AgentDoc]
    loaded_at: str
    loaded_monotonic: float
    error: str | None = None
    namespace: str | None = None

    @classmethod
    def failed(cls, source: str, error: str) -> Snapshot:
        """A snapshot that denies every call: what is left when no valid state could be loaded."""
        return cls(source, "none", None, None, None, frozenset(), {}, {}, format_ts(now()), time.monotonic(), error)

    def credential(self, connector: str, agent: str) -> CredentialRef | None:
        """The agent's own credential for the connector, else the shared one."""
        return self.credentials.get((connector, agent)) or self.credentials.get((connector, ""))

    def check_handle(self, token: str | None, at: datetime,
                     lookup: Callable[[str, str], HandleRow | None] | None = None) -> HandleCheck:
        """Signature, issue record, revocation, expiry and the credential behind it; the agent's status is left
        to the engine, which denies a suspended or decommissioned agent at the intercept with score 100.

        `lookup` reads a handle issued after this snapshot was loaded (a correctly signed token the snapshot does
        not know yet), so a handle works the moment it is issued."""
        if not token:
            return HandleCheck(False, "missing")
        if self.keys is None:
            return HandleCheck(False, "bad-signature")
        claims, reason = handle_claims(self.keys, token)
        if claims is None:
            return HandleCheck(False, reason)
        ident = {"id": claims["id"], "agent": claims["agent"], "connector": claims["connector"],
                 "expires_at": claims["exp"]}
        if self.handles is not None:
            row = self.handles.get(claims["id"])
            if row is None and lookup is not None:
                row = lookup(claims["id"], claims["agent"])
            if row is None or (row.agent, row.connector, row.expires_at) != (claims["agent"], claims["connector"],
                                                                             claims["exp"]):
                return HandleCheck(False, "unknown-handle", **ident)
            if row.revoked:
                return HandleCheck(False, "revoked", **ident)
        elif claims["id"] in self.revoked:
            return HandleCheck(False, "revoked", **ident)
        try:
            expires, issued = parse_ts(claims["exp"]), parse_ts(claims["iat"])
        except ValueError:
            return HandleCheck(False, "malformed")
        if at >= expires:
            return HandleCheck(False, "expired", **ident)
        if at < issued:
            return HandleCheck(False, "not-yet-valid", **ident)
        if self.credential(claims["connector"], claims["agent"]) is None:
            return HandleCheck(False, "no-credential", **ident)
        return HandleCheck(True, "ok", **ident)


class Source(Protocol):
    """Where enforcement state comes from."""

    name: str

    def changed(self) -> bool:
        """Whether anything changed since the last load (cheap; called every poll)."""
        ...

    def load(self, window: SessionWindow, suspended: frozenset[str]) -> Snapshot:
        """A new snapshot; raises when no valid state can be built."""
        ...

    def secret(self, ref: CredentialRef) -> bytes:
        """The secret a credential reference stands for (called on the event loop, cached by the vault)."""
        ...


def _group(approved: list[ApprovedCall]) -> dict[str, tuple[ApprovedCall, ...]]:
    out: dict[str, list[ApprovedCall]] = {}
    for item in approved:
        out.setdefault(item.agent, []).append(item)
    return {k: tuple(sorted(v, key=lambda a: a.id)) for k, v in out.items()}


def _approved_calls(conn: sqlite3.Connection, at: datetime) -> list[ApprovedCall]:
    from arxctl.registry import approvals

    return [a.approved_call() for a in approvals.list_approvals(conn, at=at, status=approvals.APPROVED)]


def _suspend(engine: EngineState, names: frozenset[str]) -> EngineState:
    """The state with the named agents suspended (live drift on a replica that cannot write the registry)."""
    hit = [n for n in names if n in engine.agents and engine.agents[n].status == "active"]
    if not hit:
        return engine
    agents = dict(engine.agents)
    for name in hit:
        agents[name] = replace(agents[name], status=SUSPENDED)
    return replace(engine, agents=agents)


def _file_identity(path: Path) -> tuple[int, int, int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size


class StateSource:
    """Enforcement state from the embedded store (`--state DIR`): the registry, lifecycle, grants, handles,
    credentials and approved calls, read in one transaction."""

    name = "state"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.store = Store(directory, create=False)
        self._reader: Store | None = None
        self._version: int | None = None
        self._key: tuple[int, int, int, int] | None = None

    def _marks(self) -> tuple[int, tuple[int, int, int, int] | None]:
        version = self.store.conn.execute("PRAGMA data_version").fetchone()[0]
        return version, _file_identity(vault_keys.key_path(self.directory))

    def changed(self) -> bool:
        version, key = self._marks()
        return version != self._version or key != self._key

    def load(self, window: SessionWindow, suspended: frozenset[str]) -> Snapshot:
        from arxctl.chain import store as chain
        from arxctl.policy.state import load_state
        from arxctl.registry import credentials, handles
        from arxctl.registry import resources as registry

        self._version, self._key = self._marks()
        at = now()
        conn = self.store.conn
        conn.execute("BEGIN")
        try:
            engine = load_state(self.store, window=window, grants_since=at, approvals=_approved_calls(conn, at))
            rows = {h.id: HandleRow(h.id, h.agent, h.connector, h.expires_at, h.revoked_at is not None)
                    for h in handles.list_handles(conn)}
            creds = {(c.connector, c.agent or ""): CredentialRef(c.connector, c.agent or "", c.version, c.fingerprint)
                     for c in credentials.list_credentials(conn)}
            agents = {h.name: AgentDoc(v.doc, h.status) for h, v in registry.current(self.store, "Agent")}
            seq = chain.tip(conn)[0]
        finally:
            conn.execute("COMMIT")
        try:
            keys: PlatformKeys | None = vault_keys.platform_keys(self.directory, create=False)
        except ArxError:
            keys = None
        revision = f"chain:{seq} policies:{engine.policies.revision}"
        return Snapshot(self.name, revision, _suspend(engine, suspended), keys, rows, frozenset(), creds, agents,
                        format_ts(at), time.monotonic())

    def _read(self) -> Store:
        if self._reader is None:
            self._reader = Store(self.directory, create=False)
        return self._reader

    def secret(self, ref: CredentialRef) -> bytes:
        from arxctl.registry import credentials

        return credentials.secret_for(self._read(), ref.connector, ref.agent)

    def handle(self, handle_id: str, agent: str) -> HandleRow | None:
        """One handle as the state records it now (for a handle issued after the snapshot)."""
        from arxctl.registry import handles

        found = [h for h in handles.list_handles(self._read().conn, agent=agent) if h.id == handle_id]
        return HandleRow(found[0].id, found[0].agent, found[0].connector, found[0].expires_at,
                         found[0].revoked_at is not None) if found else None


class BundleSource:
    """Enforcement state from the operator's bundle (a mounted ConfigMap), handle keys and credentials from a
    mounted Secret directory, and approved calls from the gateway's own state store."""

    name = "bundle"

    def __init__(self, bundle_dir: Path, secrets_dir: Path | None, approvals: Path | None) -> None:
        self.bundle_dir = bundle_dir
        self.secrets_dir = secrets_dir
        self.store = Store(approvals) if approvals is not None else None
        self._marks_seen: tuple[Any, ...] | None = None

    def _bundle_file(self) -> Path:
        from arxctl.policy.bundle import BUNDLE_KEY

        return self.bundle_dir / BUNDLE_KEY if self.bundle_dir.is_dir() else self.bundle_dir

    def _secret_files(self) -> list[Path]:
        if self.secrets_dir is None or not self.secrets_dir.is_dir():
            return []
        return sorted(p for p in self.secrets_dir.iterdir()
                      if not p.name.startswith(".") and p.name != vault_keys.KEY_FILE and p.is_file())

    def _marks(self) -> tuple[Any, ...]:
        bundle = _file_identity(self._bundle_file())
        secrets = tuple((p.name, _file_identity(p)) for p in self._secret_files())
        key = _file_identity(self.secrets_dir / vault_keys.KEY_FILE) if self.secrets_dir else None
        version = self.store.conn.execute("PRAGMA data_version").fetchone()[0] if self.store else None
        return bundle, secrets, key, version

    def changed(self) -> bool:
        return self._marks() != self._marks_seen

    def load(self, window: SessionWindow, suspended: frozenset[str]) -> Snapshot:
        from arxctl.policy.bundle import load_bundle_dir, state_from_bundle
        from arxctl.registry.credentials import read_secret

        self._marks_seen = self._marks()
        at = now()
        bundle = load_bundle_dir(self.bundle_dir)
        engine = state_from_bundle(bundle, window=window)
        if self.store is not None:
            engine = replace(engine, approvals=_group(_approved_calls(self.store.conn, at)))
        keys: PlatformKeys | None = None
        creds: dict[tuple[str, str], CredentialRef] = {}
        if self.secrets_dir is not None and vault_keys.key_path(self.secrets_dir).exists():
            keys = vault_keys.platform_keys(self.secrets_dir, create=False)
            for path in self._secret_files():
                connector, _, agent = path.name.partition(".")
                secret = read_secret(path.read_bytes())
                creds[(connector, agent)] = CredentialRef(connector, agent, 1, keys.fingerprint_of(secret), path)
        agents = {a["name"]: AgentDoc(a["doc"], a["status"]) for a in bundle["agents"]}
        return Snapshot(self.name, str(bundle["revision"]), _suspend(engine, suspended), keys, None,
                        frozenset(bundle["revoked_handles"]), creds, agents, format_ts(at), time.monotonic(),
                        namespace=str(bundle["namespace"]))

    def secret(self, ref: CredentialRef) -> bytes:
        from arxctl.registry.credentials import read_secret

        assert ref.path is not None
        return read_secret(ref.path.read_bytes())


@dataclass(slots=True)
class ReloadStats:
    """How reloads went: counts, the last duration and the last error."""

    reloads: int = 0
    errors: int = 0
    last_ms: float = 0.0
    last_error: str | None = None


class Enforcer:
    """Holds the current snapshot and replaces it whenever the source changes."""

    def __init__(self, source: Source, *, poll_s: float = POLL_S, window: SessionWindow | None = None) -> None:
        self.source = source
        self.poll_s = poll_s
        self.window = window if window is not None else SessionWindow()
        self.stats = ReloadStats()
        self.snapshot: Snapshot = Snapshot.failed(source.name, "not loaded yet")
        self._suspended: frozenset[str] = frozenset()
        self._handover: frozenset[str] = frozenset()
        self._secrets: dict[CredentialRef, bytes] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Load once now, then watch on a background thread."""
        self.reload()
        self._thread = threading.Thread(target=self._watch, name="arx-gateway-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def refresh(self) -> None:
        """Reload on the next poll even if the source looks unchanged (after the gateway's own writes)."""
        self._wake.set()

    def suspend_locally(self, agent: str, *, handover: bool = False) -> None:
        """Deny an agent on this replica from now on (live drift in bundle mode, where the registry is the
        operator's). Without `handover` it holds until the process ends; with it (the hold was written to the
        Agent's status), it holds until the source itself shows the agent suspended, so that from then on only an
        admin's reactivation in the cluster lifts it."""
        with self._lock:
            self._suspended = self._suspended | {agent}
            if handover:
                self._handover = self._handover | {agent}
        self.refresh()

    def reload(self) -> Snapshot:
        """Build and install a new snapshot; on failure install one that denies everything."""
        started = time.perf_counter()
        with self._lock:
            suspended = self._suspended
        try:
            snapshot = self.source.load(self.window, suspended)
        except (ArxError, sqlite3.Error, OSError, ValueError, KeyError, TypeError) as exc:
            snapshot = Snapshot.failed(self.source.name, f"{type(exc).__name__}: {exc}")
            self.stats.errors += 1
            self.stats.last_error = snapshot.error
        with self._lock:
            taken = {a for a in self._handover if a in snapshot.agents and snapshot.agents[a].status != "active"}
            self._suspended, self._handover = self._suspended - taken, self._handover - taken
        self.snapshot = snapshot
        live = set(snapshot.credentials.values())
        self._secrets = {ref: s for ref, s in dict(self._secrets).items() if ref in live}
        self.stats.reloads += 1
        self.stats.last_ms = round((time.perf_counter() - started) * 1000, 2)
        return snapshot

    def _watch(self) -> None:
        last_try = time.monotonic()
        while not self._stop.is_set():
            woken = self._wake.wait(self.poll_s)
            if self._stop.is_set():
                return
            self._wake.clear()
            retry = self.snapshot.error is not None and time.monotonic() - last_try >= RETRY_FAILED_S
            try:
                due = woken or retry or self.source.changed()
            except (sqlite3.Error, OSError):
                due = True
            if due:
                last_try = time.monotonic()
                self.reload()

    def secret(self, ref: CredentialRef) -> bytes:
        """The secret behind a credential reference, decrypted (or read) once per credential version."""
        found = self._secrets.get(ref)
        if found is None:
            found = self.source.secret(ref)
            self._secrets[ref] = found
        return found


def open_source(*, state: Path, bundle: Path | None, secrets: Path | None) -> Source:
    """The state store (`--state`) or, with `--bundle`, the bundle plus the state store for approvals."""
    if bundle is None:
        if not (state / DB_NAME).exists():
            from arxctl.errors import StateError

            raise StateError(f"no arxctl state at {state} (run `arxctl register` first, or pass --state/--bundle)")
        return StateSource(state)
    return BundleSource(bundle, secrets, state)


def process_id() -> str:
    """A default replica id: the host name (the pod name in Kubernetes) and the process id."""
    host = os.environ.get("HOSTNAME") or os.uname().nodename
    return f"{host}-{os.getpid()}"


