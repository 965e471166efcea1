"""Each gateway replica's own audit chain: a state database under `<state>/gateway/<replica-id>/`.

Replicas never share a log, so no lock is held across replicas and appends scale with them. Each log has its own
random log id, publishes its own signed checkpoints to the witness, and is exported and verified like any chain
(`arxctl chain export --state <state>/gateway/<replica-id>`; `verify_chain_set` checks the logs together).
Records are committed before the agent gets its answer (they survive a crash of the gateway process); the WAL
is synced to disk by a checkpoint at least every `sync_s` seconds, which bounds what a power loss can take.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

from arxctl.chain import keys
from arxctl.chain import store as chain
from arxctl.chain.records import Record
from arxctl.clock import now_ts
from arxctl.errors import StateError
from arxctl.store.sqlite import Store

GATEWAY_DIR = "gateway"
LOCK_FILE = "replica.lock"
META_FILE = "replica.json"
SYNC_S = 1.0


def replica_dir(state: Path, replica: str) -> Path:
    return state / GATEWAY_DIR / replica


def replica_dirs(state: Path) -> list[Path]:
    """Every replica log under a state directory, by replica id."""
    base = state / GATEWAY_DIR
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if (p / "state.db").exists())


class ReplicaLog:
    """The chain only this replica appends to; appends run on the event loop thread, syncing and publishing on
    their own threads with their own connections."""

    def __init__(self, state: Path, replica: str, *, main: Store | None = None, sync_s: float = SYNC_S) -> None:
        if not replica or "/" in replica or replica.startswith("."):
            raise StateError(f"invalid replica id {replica!r}")
        self.replica = replica
        self.directory = replica_dir(state, replica)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise StateError(f"replica '{replica}' is already running on {self.directory} "
                             "(each replica needs its own --replica-id)") from None
        self.store = Store(self.directory)
        self.store.conn.execute("PRAGMA synchronous = NORMAL")
        self.store.conn.execute("PRAGMA wal_autocheckpoint = 0")
        self.log_id = chain.log_id(self.store.conn)
        if main is not None:
            self._share_keys(main)
        (self.directory / META_FILE).write_bytes(orjson.dumps({"replica": replica, "log": self.log_id,
                                                                "started": now_ts(), "pid": os.getpid()}))
        self.healthy = True
        self.sync_s = sync_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _share_keys(self, main: Store) -> None:
        """Register the platform's signing keys in this log (public halves) and reach their files through
        `keys/`, so this log exports and verifies like the main one."""
        mine = {k.key_id for k in keys.list_keys(self.store.conn)}
        missing = [k for k in keys.list_keys(main.conn) if k.key_id not in mine]
        if missing:
            with self.store.transaction() as conn:
                for key in missing:
                    keys._register(conn, key)
        link = self.directory / keys.KEYS_DIR
        target = main.directory / keys.KEYS_DIR
        if target.is_dir() and not link.exists():
            link.symlink_to(os.path.relpath(target, self.directory))

    def append(self, entry: chain.Entry) -> Record:
        """Append one record and commit it; a failure marks the log unhealthy (the gateway refuses calls, each
        refusal's own record probing the log) until an append succeeds again."""
        try:
            with self.store.transaction() as conn:
                record = chain.append(conn, entry)
        except Exception:
            self.healthy = False
            raise
        self.healthy = True
        return record

    def size(self) -> int:
        return chain.size(self.store.conn)

    def start(self, *, witness: Any = None, signer: Any = None, publish_every: timedelta | None = None,
              on_publish: Callable[[Any], None] | None = None, on_error: Callable[[str], None] | None = None) -> None:
        """Sync the WAL every `sync_s`; with a witness, publish a checkpoint every `publish_every`."""
        self._threads.append(threading.Thread(target=self._sync_loop, name="arx-gateway-sync", daemon=True))
        if witness is not None and signer is not None:
            interval = (publish_every or timedelta(minutes=1)).total_seconds()
            self._threads.append(threading.Thread(
                target=self._publish_loop, args=(witness, signer, interval, on_publish, on_error),
                name="arx-gateway-publish", daemon=True))
        for thread in self._threads:
            thread.start()

    def _sync_loop(self) -> None:
        syncer = Store(self.directory)
        try:
            while not self._stop.wait(self.sync_s):
                syncer.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            syncer.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            syncer.close()

    def _publish_loop(self, witness: Any, signer: Any, interval: float, on_publish: Callable[[Any], None] | None,
                      on_error: Callable[[str], None] | None) -> None:
        from arxctl.chain import checkpoints

        publisher = Store(self.directory)
        try:
            while True:
                stopping = self._stop.is_set()
                try:
                    done = checkpoints.publish(publisher, witness, signer)
                    if on_publish is not None:
                        on_publish(done)
                except Exception as exc:
                    if on_error is not None:
                        on_error(f"checkpoint publish failed: {type(exc).__name__}: {exc}")
                if stopping:
                    break
                self._stop.wait(interval)
        finally:
            publisher.close()

    def close(self) -> None:
        """Stop syncing and publishing (one last checkpoint is published), then release the replica id."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30.0)
        with contextlib.suppress(Exception):
            self.store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.store.close()
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)


def signer_for(log: ReplicaLog, *, key_id: str | None, kms_key_id: str | None) -> keys.Signer:
    """The signer for this log's checkpoints: a registered key (shared from the main store) or a KMS key."""
    return keys.signer(log.store.conn, log.directory, key_id=key_id, kms_key_id=kms_key_id)
