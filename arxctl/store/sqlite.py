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
