"""The store keeps the Merkle frontier and subtree cache in step with appends; seals stop appends."""

from __future__ import annotations

from pathlib import Path

import pytest

from arxctl.chain import store as chain
from arxctl.chain.merkle import consistency_proof, inclusion_proof, leaf_hash, root_of
from arxctl.chain.seal import retention_table, seal
from arxctl.errors import InputError, SealedError
from arxctl.store.sqlite import Store
from tests.chain.conftest import entries


def test_frontier_and_cached_subtrees_give_the_naive_root_and_proofs(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    for start, count in ((1, 1), (2, 300), (302, 399), (701, 1)):
        with store.transaction() as conn:
            chain.append_many(conn, entries(start, count))
    leaves = [leaf_hash(line) for line in chain.iter_line_bytes(store.conn)]
    assert len(leaves) == 701
    assert chain.merkle_root(store.conn) == (701, root_of(leaves))
    levels = store.conn.execute("SELECT level, idx FROM chain_nodes ORDER BY level, idx").fetchall()
    assert levels == [(8, 0), (8, 1), (9, 0)]
    tree = chain.StoredTree(store.conn)
    naive = lambda a, b: root_of(leaves[a:b])  # noqa: E731
    for index in (0, 255, 256, 511, 600, 700):
        assert inclusion_proof(index, 701, tree.subtree) == inclusion_proof(index, 701, naive)
    for old in (1, 256, 300, 512, 700):
        assert consistency_proof(old, 701, tree.subtree) == consistency_proof(old, 701, naive)


def test_frontier_catches_up_with_records_written_before_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    with store.transaction() as conn:
        chain.append_many(conn, entries(1, 300))
    with store.transaction() as conn:
        conn.execute("DELETE FROM chain_merkle")
        conn.execute("DELETE FROM chain_nodes")
    with store.transaction() as conn:
        chain.append_many(conn, entries(301, 5))
    leaves = [leaf_hash(line) for line in chain.iter_line_bytes(store.conn)]
    assert chain.merkle_root(store.conn) == (305, root_of(leaves))
    assert store.conn.execute("SELECT level, idx FROM chain_nodes").fetchall() == [(8, 0)]


def test_a_sealed_agent_takes_no_more_records(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    with store.transaction() as conn:
        chain.append_many(conn, entries(1, 3))
        record = seal(conn, "triage-cs-01", "sox-7yr", "dana", "decommissioned", ts="2026-04-14T00:00:00Z")
    assert record.seq == 4
    assert record.type == "agent.sealed"
    assert record.body == {"retention": {"class": "sox-7yr", "years": 7, "immutable": True},
                           "reason": "decommissioned"}
    refused = "agent 'triage-cs-01' is sealed: its record takes no further entries"
    with pytest.raises(SealedError, match=refused), store.transaction() as conn:
        chain.append(conn, chain.Entry("decision", "triage-cs-01", "gw", {}))
    with pytest.raises(SealedError, match="agent 'triage-cs-01' is already sealed"), store.transaction() as conn:
        seal(conn, "triage-cs-01", "sox-7yr", "dana", "again")
    with store.transaction() as conn:
        chain.append(conn, chain.Entry("decision", "cloud-posture", "gw", {}))
    assert chain.size(store.conn) == 5
    assert chain.sealed_agents(store.conn) == {"triage-cs-01": (4, "sox-7yr")}
    with pytest.raises(SealedError), store.transaction() as conn:
        chain.append_many(conn, [
            chain.Entry("agent.sealed", "b", "x", {"retention": {"class": "standard-1yr"}}),
            chain.Entry("decision", "b", "x", {}),
        ])
    assert chain.size(store.conn) == 5


def test_retention_table_is_configurable_and_checked(tmp_path: Path) -> None:
    config = tmp_path / "retention.yaml"
    config.write_text("classes:\n  bank-10yr: {years: 10, immutable: true}\n  sox-7yr: {years: 8, immutable: true}\n")
    table = retention_table(tmp_path)
    assert (table["bank-10yr"].years, table["sox-7yr"].years, table["hipaa-6yr"].years) == (10, 8, 6)
    store = Store(tmp_path / "s")
    unknown = "unknown retention class 'nope'; known: bank-10yr, finra-6yr, gdpr-min"
    with pytest.raises(InputError, match=unknown), store.transaction() as conn:
        seal(conn, "a", "nope", "dana", "x", table=table)
    config.write_text("classes:\n  broken: {years: ten}\n")
    with pytest.raises(InputError, match="retention class 'broken' needs `years`"):
        retention_table(tmp_path)
