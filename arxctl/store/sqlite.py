"""The embedded state store: one SQLite database in WAL mode with versioned migrations."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from arxctl.errors import StateError

DB_NAME = "state.db"
BUSY_TIMEOUT_MS = 60_000

# Append-only list: migration N brings user_version from N-1 to N. Never edit a released entry.
MIGRATIONS: list[str] = [
    # 1: resources with immutable versions, heads, and the audit chain.
    """
    CREATE TABLE resources (
        kind TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,
        digest TEXT NOT NULL, doc TEXT NOT NULL, ts TEXT NOT NULL,
        actor TEXT NOT NULL, reason TEXT,
        PRIMARY KEY (kind, name, version)
    );
    CREATE TABLE heads (
        kind TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,
        status TEXT NOT NULL DEFAULT 'active', updated_ts TEXT NOT NULL,
        PRIMARY KEY (kind, name)
    );
    CREATE TABLE chain (
        seq INTEGER PRIMARY KEY, ts TEXT NOT NULL, type TEXT NOT NULL,
        agent TEXT, actor TEXT, hash TEXT NOT NULL UNIQUE, line TEXT NOT NULL
    );
    CREATE INDEX chain_agent ON chain (agent, seq);
    """,
    # 2: the audit chain's Merkle frontier and subtree cache, signed checkpoints, signing keys, seals.
    """
    CREATE TABLE chain_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    INSERT INTO chain_meta (key, value) VALUES ('log_id', lower(hex(randomblob(8))));
    CREATE TABLE chain_merkle (
        id INTEGER PRIMARY KEY CHECK (id = 1), size INTEGER NOT NULL, frontier BLOB NOT NULL
    );
    CREATE TABLE chain_nodes (
        level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (level, idx)
    ) WITHOUT ROWID;
    CREATE TABLE chain_checkpoints (
        n INTEGER PRIMARY KEY, size INTEGER NOT NULL, ts TEXT NOT NULL, line TEXT NOT NULL
    );
    CREATE TABLE chain_published (
        n INTEGER NOT NULL, witness TEXT NOT NULL, object TEXT NOT NULL, ts TEXT NOT NULL,
        PRIMARY KEY (witness, n)
    );
    CREATE TABLE chain_keys (
        key_id TEXT PRIMARY KEY, algorithm TEXT NOT NULL, public_pem TEXT NOT NULL,
        valid_from TEXT NOT NULL, valid_until TEXT, source TEXT NOT NULL
    );
    CREATE TABLE chain_seals (
        agent TEXT PRIMARY KEY, seq INTEGER NOT NULL, retention_class TEXT NOT NULL, ts TEXT NOT NULL
    );
    """,
    # 3: lifecycle: suspension and throttle detail, approvals, grants, encrypted credentials, handles.
    """
    CREATE TABLE agent_lifecycle (
        agent TEXT PRIMARY KEY, throttled INTEGER NOT NULL DEFAULT 0, throttle_reason TEXT,
        throttle_source TEXT, throttled_ts TEXT, throttled_by TEXT, suspended_reason TEXT, suspended_source TEXT,
        suspended_ts TEXT, suspended_by TEXT, decommissioned_ts TEXT, decommissioned_by TEXT,
        decommission_reason TEXT, retention_class TEXT, replaced_by TEXT
    );
    CREATE TABLE approvals (
        id TEXT PRIMARY KEY, agent TEXT NOT NULL, action TEXT NOT NULL, session TEXT NOT NULL,
        decision_id TEXT NOT NULL, decision_seq INTEGER, payload_digest TEXT NOT NULL, target TEXT NOT NULL,
        payload TEXT NOT NULL, diff TEXT, policy TEXT, rule TEXT, severity TEXT, grp TEXT, timeout TEXT NOT NULL,
        requested_by TEXT NOT NULL, requested_ts TEXT NOT NULL, expires_ts TEXT NOT NULL, status TEXT NOT NULL,
        decided_by TEXT, decided_ts TEXT, comment TEXT, usable_until TEXT, consumed_ts TEXT, consumed_decision TEXT
    );
    CREATE INDEX approvals_agent ON approvals (agent, status);
    CREATE INDEX approvals_status ON approvals (status);
    CREATE TABLE grants (
        id TEXT PRIMARY KEY, agent TEXT NOT NULL, actions TEXT NOT NULL, scope TEXT NOT NULL,
        ttl_s INTEGER NOT NULL, reason TEXT NOT NULL, requested_by TEXT NOT NULL, requested_ts TEXT NOT NULL,
        phase TEXT NOT NULL, decided_by TEXT, decided_ts TEXT, comment TEXT, approved_at TEXT, expires_at TEXT,
        revoked_by TEXT, revoked_ts TEXT, revoke_reason TEXT, expiry_recorded INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX grants_agent ON grants (agent, phase);
    CREATE INDEX grants_phase ON grants (phase);
    CREATE INDEX grants_expiry ON grants (expires_at);
    CREATE TABLE credentials (
        connector TEXT NOT NULL, agent TEXT NOT NULL DEFAULT '', version INTEGER NOT NULL, nonce BLOB NOT NULL,
        ciphertext BLOB NOT NULL, fingerprint TEXT NOT NULL, created_ts TEXT NOT NULL, updated_ts TEXT NOT NULL,
        updated_by TEXT NOT NULL, PRIMARY KEY (connector, agent)
    );
    CREATE TABLE handles (
        id TEXT PRIMARY KEY, agent TEXT NOT NULL, connector TEXT NOT NULL, issued_ts TEXT NOT NULL,
        expires_ts TEXT NOT NULL, issued_by TEXT NOT NULL, revoked_ts TEXT, revoked_by TEXT, revoke_reason TEXT
    );
    CREATE INDEX handles_agent ON handles (agent);
    """,
    # 4: the chain without the UNIQUE index on hash (unique by construction, never looked up): its random-order
    # pages made each batched append rewrite most of the index.
    """
    CREATE TABLE chain_v4 (
        seq INTEGER PRIMARY KEY, ts TEXT NOT NULL, type TEXT NOT NULL,
        agent TEXT, actor TEXT, hash TEXT NOT NULL, line TEXT NOT NULL
    );
    INSERT INTO chain_v4 (seq, ts, type, agent, actor, hash, line)
        SELECT seq, ts, type, agent, actor, hash, line FROM chain ORDER BY seq;
    DROP TABLE chain;
    ALTER TABLE chain_v4 RENAME TO chain;
    CREATE INDEX chain_agent ON chain (agent, seq);
    """,
    # 5: the operator's marks: what it last recorded per cluster object, written in the same transaction as the
    # record, so a restart mid-reconcile never records the same change twice.
    """
    CREATE TABLE operator_marks (
        mark TEXT PRIMARY KEY, value TEXT NOT NULL, seq INTEGER NOT NULL, ts TEXT NOT NULL
    );
    """,
    # 6: what the gateway shows an approver besides the call: the agent's reasoning trace and the blast radius.
    """
    CREATE TABLE approval_context (
        approval_id TEXT PRIMARY KEY, context TEXT NOT NULL, ts TEXT NOT NULL
    );
    """,
]


def resolve_state_dir(state: Path | None = None) -> Path:
    """`--state DIR`, else `ARX_HOME`, else `.arx/` in the current directory."""
    if state is not None:
        return state
    env = os.environ.get("ARX_HOME")
    return Path(env) if env else Path.cwd() / ".arx"


class Store:
    """A connection to the state database; writes go through `transaction()`."""

    def __init__(self, directory: Path, *, create: bool = True) -> None:
        self.directory = directory
        self.path = directory / DB_NAME
        if not self.path.exists() and not create:
            raise StateError(f"no arxctl state at {directory} (run `arxctl register` first, or pass --state)")
        try:
            directory.mkdir(parents=True, exist_ok=True)
            if os.name == "posix":
                os.chmod(directory, 0o700)
            self.conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StateError(f"cannot put {self.path} in WAL mode (got {mode})")
            self.conn.execute("PRAGMA synchronous = FULL")
            self.conn.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StateError(f"state database {self.path} is unreadable: {exc}") from exc

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StateError(
                f"state at {self.path} has schema version {version}; this arxctl knows {len(MIGRATIONS)}: upgrade"
            )
        if version == len(MIGRATIONS):
            return
        with self.transaction() as conn:
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for number in range(version + 1, len(MIGRATIONS) + 1):
                for statement in MIGRATIONS[number - 1].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE transaction: takes the write lock first, so concurrent writers serialize."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StateError(f"state database {self.path} is locked: {exc}") from exc
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(state: Path | None = None, *, create: bool = True) -> Store:
    return Store(resolve_state_dir(state), create=create)


def existing_store(state: Path | None = None) -> Store | None:
    """The store when one exists, else None (read-only commands never create state)."""
    directory = resolve_state_dir(state)
    if not (directory / DB_NAME).exists():
        return None
    return Store(directory, create=False)
