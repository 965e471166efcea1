"""Migration 4 rebuilds the chain table without the UNIQUE index on hash and keeps every record as it was."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from arxctl.chain import store as chain
from arxctl.chain.verify import verify_store
from arxctl.store.sqlite import DB_NAME, MIGRATIONS, Store
from tests.chain.conftest import entries


def state_at_version_3(directory: Path) -> None:
    """A state database as arxctl left it before migration 4, holding 300 chain records."""
    directory.mkdir(parents=True)
    conn = sqlite3.connect(directory / DB_NAME, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN IMMEDIATE")
    for script in MIGRATIONS[:3]:
        for statement in script.split(";"):
            if statement.strip():
                conn.execute(statement)
    conn.execute("PRAGMA user_version = 3")
    chain.append_many(conn, entries(1, 300))
    conn.execute("COMMIT")
    conn.close()


def test_migration_keeps_records_and_drops_the_hash_index(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state_at_version_3(state)
    before = sqlite3.connect(state / DB_NAME)
    rows = before.execute("SELECT seq, ts, type, agent, actor, hash, line FROM chain ORDER BY seq").fetchall()
    before.close()
    assert len(rows) == 300
    with Store(state) as store:
        conn = store.conn
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) >= 4
        assert conn.execute("SELECT seq, ts, type, agent, actor, hash, line FROM chain ORDER BY seq").fetchall() == rows
        assert [r[1] for r in conn.execute("PRAGMA index_list(chain)")] == ["chain_agent"]
        with store.transaction() as tx:
            appended = chain.append_many(tx, entries(301, 5))
        assert [r.seq for r in appended] == [301, 302, 303, 304, 305]
        assert appended[0].prev == rows[-1][5]
        result = verify_store(store)
        assert (result.ok, result.records) == (True, 305)
