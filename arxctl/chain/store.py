"""Appending to and reading the chain inside the state database's transactions."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

from arxctl.canonical import canonical_bytes
from arxctl.chain.merkle import CACHE_LEVEL, CompactRange, leaf_hash, node_hash, range_hash, root_of
from arxctl.chain.records import GENESIS, Record
from arxctl.clock import now_ts
from arxctl.errors import SealedError, StateError

SEALED = "agent.sealed"
_BIG_BATCH = 1000
_BIG_BATCH_CACHE_KIB = 32768
"""Connections that append batches of `_BIG_BATCH` records or more get a page cache of this size."""


@dataclass(frozen=True, slots=True)
class Entry:
    """What a caller asks to append; seq, prev and hash are assigned by the store."""

    type: str
    agent: str | None
    actor: str | None
    body: dict[str, Any]
    ts: str | None = None


def tip(conn: sqlite3.Connection) -> tuple[int, str]:
    row = conn.execute("SELECT seq, hash FROM chain ORDER BY seq DESC LIMIT 1").fetchone()
    return (row[0], row[1]) if row else (0, GENESIS)


def log_id(conn: sqlite3.Connection) -> str:
    """The random id that names this log's checkpoints in a witness."""
    return conn.execute("SELECT value FROM chain_meta WHERE key = 'log_id'").fetchone()[0]


def append(conn: sqlite3.Connection, entry: Entry) -> Record:
    """Append one record; call inside `Store.transaction()` so it commits with the change it records."""
    return append_many(conn, [entry])[0]


def append_many(conn: sqlite3.Connection, entries: Iterable[Entry]) -> list[Record]:
    """Append records in order within the caller's transaction (the write lock serializes appenders)."""
    if not conn.in_transaction:
        raise RuntimeError("chain appends must run inside a write transaction")
    entries = list(entries)
    sealed = _sealed_among(conn, {e.agent for e in entries if e.agent is not None})
    seq, prev = tip(conn)
    nodes: list[tuple[int, int, bytes]] = []
    frontier = _frontier(conn, seq, nodes)
    frontier.on_complete = lambda level, idx, h: nodes.append((level, idx, h))
    out: list[Record] = []
    rows = []
    seals = []
    default_ts = None
    add_leaf = frontier.append
    for entry in entries:
        agent = entry.agent
        if agent is not None and agent in sealed:
            raise SealedError(f"agent '{agent}' is sealed: its record takes no further entries")
        seq += 1
        ts = entry.ts
        if ts is None and default_ts is None:
            default_ts = now_ts()
        ts = ts or default_ts
        unhashed = canonical_bytes({
            "seq": seq, "ts": ts, "type": entry.type, "agent": agent, "actor": entry.actor, "body": entry.body,
            "prev": prev,
        })
        digest = "sha256:" + sha256(unhashed).hexdigest()
        at = unhashed.rfind(b',"prev":"')
        line = b'%s,"hash":"%s"%s' % (unhashed[:at], digest.encode(), unhashed[at:])
        out.append(Record(seq, ts, entry.type, agent, entry.actor, entry.body, prev, digest))
        add_leaf(leaf_hash(line))
        rows.append((seq, ts, entry.type, agent, entry.actor, digest, line.decode("utf-8")))
        prev = digest
        if entry.type == SEALED and agent is not None:
            sealed.add(agent)
            seals.append((agent, seq, str(entry.body.get("retention", {}).get("class", "")), ts))
    if len(rows) >= _BIG_BATCH:
        conn.execute(f"PRAGMA cache_size = -{_BIG_BATCH_CACHE_KIB}")
    conn.executemany("INSERT INTO chain (seq, ts, type, agent, actor, hash, line) VALUES (?,?,?,?,?,?,?)", rows)
    if seals:
        conn.executemany("INSERT INTO chain_seals (agent, seq, retention_class, ts) VALUES (?,?,?,?)", seals)
    _save_frontier(conn, frontier, nodes)
    return out


def _sealed_among(conn: sqlite3.Connection, agents: set[str]) -> set[str]:
    if not agents:
        return set()
    names = sorted(agents)
    found: set[str] = set()
    for i in range(0, len(names), 500):
        part = names[i:i + 500]
        marks = ",".join("?" * len(part))
        found.update(r[0] for r in conn.execute(f"SELECT agent FROM chain_seals WHERE agent IN ({marks})", part))
    return found


def sealed_agents(conn: sqlite3.Connection) -> dict[str, tuple[int, str]]:
    """Sealed agents with the seq of their seal record and their retention class."""
    return {r[0]: (r[1], r[2]) for r in conn.execute("SELECT agent, seq, retention_class FROM chain_seals")}


def _frontier(conn: sqlite3.Connection, size_now: int, nodes: list[tuple[int, int, bytes]]) -> CompactRange:
    """The stored Merkle frontier, caught up with any records appended before it existed."""
    row = conn.execute("SELECT size, frontier FROM chain_merkle WHERE id = 1").fetchone()
    frontier = CompactRange.from_bytes(row[0], row[1]) if row else CompactRange()
    if frontier.size > size_now:
        raise StateError(f"the Merkle frontier covers {frontier.size} records but the chain has {size_now}")
    if frontier.size < size_now:
        frontier.on_complete = lambda level, idx, h: nodes.append((level, idx, h))
        for line in iter_line_bytes(conn, start=frontier.size + 1):
            frontier.append(leaf_hash(line))
    return frontier


def _save_frontier(conn: sqlite3.Connection, frontier: CompactRange, nodes: list[tuple[int, int, bytes]]) -> None:
    if nodes:
        conn.executemany("INSERT OR REPLACE INTO chain_nodes (level, idx, hash) VALUES (?,?,?)", nodes)
    conn.execute(
        "INSERT INTO chain_merkle (id, size, frontier) VALUES (1, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET size = excluded.size, frontier = excluded.frontier",
        (frontier.size, frontier.to_bytes()),
    )


def merkle_root(conn: sqlite3.Connection) -> tuple[int, bytes]:
    """The size and Merkle root of the whole chain (read-only; catches up in memory if needed)."""
    size_now = size(conn)
    frontier = _frontier(conn, size_now, [])
    return frontier.size, frontier.root()


def iter_lines(
    conn: sqlite3.Connection, *, agent: str | None = None, start: int = 1, batch: int = 10_000
) -> Iterator[str]:
    """Stored record lines in seq order, streamed in batches."""
    for _, line in _rows(conn, "line", agent=agent, start=start, end=None, batch=batch):
        yield line


def iter_line_bytes(
    conn: sqlite3.Connection, *, agent: str | None = None, start: int = 1, end: int | None = None,
    batch: int = 10_000,
) -> Iterator[bytes]:
    """Stored record lines as the exact bytes that are hashed and exported."""
    for _, line in _rows(conn, "CAST(line AS BLOB)", agent=agent, start=start, end=end, batch=batch):
        yield line


def iter_seq_lines(
    conn: sqlite3.Connection, *, agent: str | None = None, start: int = 1, end: int | None = None,
    since: str | None = None, until: str | None = None, batch: int = 10_000,
) -> Iterator[tuple[int, bytes]]:
    """(seq, line bytes) pairs in seq order, optionally one agent's and inside a time window."""
    for seq, line, ts in _rows(
        conn, "CAST(line AS BLOB), ts", agent=agent, start=start, end=end, batch=batch
    ):
        if since is not None and ts < since:
            continue
        if until is not None and ts >= until:
            continue
        yield seq, line


def _rows(
    conn: sqlite3.Connection, columns: str, *, agent: str | None, start: int, end: int | None, batch: int
) -> Iterator[tuple[Any, ...]]:
    next_seq = start
    last = end if end is not None else -1
    while True:
        where = "seq >= ? AND (? < 0 OR seq <= ?)"
        args: list[Any] = [next_seq, last, last]
        if agent is not None:
            where = "agent = ? AND " + where
            args.insert(0, agent)
        rows = conn.execute(
            f"SELECT seq, {columns} FROM chain WHERE {where} ORDER BY seq LIMIT ?", (*args, batch)
        ).fetchall()
        if not rows:
            return
        yield from rows
        next_seq = rows[-1][0] + 1


def tail(conn: sqlite3.Connection, n: int, *, agent: str | None = None) -> list[Record]:
    if agent is None:
        rows = conn.execute("SELECT line FROM chain ORDER BY seq DESC LIMIT ?", (n,)).fetchall()
    else:
        rows = conn.execute(
            "SELECT line FROM chain WHERE agent = ? ORDER BY seq DESC LIMIT ?", (agent, n)
        ).fetchall()
    return [Record.from_line(r[0]) for r in reversed(rows)]


def size(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COALESCE(MAX(seq), 0) FROM chain").fetchone()[0]


def record_at(conn: sqlite3.Connection, seq: int) -> tuple[str, str] | None:
    """(ts, hash) of the record at seq."""
    row = conn.execute("SELECT ts, hash FROM chain WHERE seq = ?", (seq,)).fetchone()
    return (row[0], row[1]) if row else None


class StoredTree:
    """Subtree hashes of the stored log for proofs: cached complete subtrees, leaves read for the rest."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._blocks: dict[int, list[bytes]] = {}

    def _block(self, index: int) -> list[bytes]:
        block = self._blocks.get(index)
        if block is None:
            width = 1 << CACHE_LEVEL
            start = index * width
            block = [leaf_hash(line) for line in iter_line_bytes(self.conn, start=start + 1, end=start + width)]
            if len(self._blocks) > 64:
                self._blocks.clear()
            self._blocks[index] = block
        return block

    def complete(self, level: int, index: int) -> bytes:
        """The hash of the complete subtree `index` at `level` (2**level leaves)."""
        if level >= CACHE_LEVEL:
            row = self.conn.execute(
                "SELECT hash FROM chain_nodes WHERE level = ? AND idx = ?", (level, index)
            ).fetchone()
            if row is not None:
                return row[0]
            return range_hash(index << level, (index + 1) << level, self._complete_below)
        return self._complete_below(level, index)

    def _complete_below(self, level: int, index: int) -> bytes:
        if level > CACHE_LEVEL:
            half = level - 1
            return node_hash(self.complete(half, index * 2), self.complete(half, index * 2 + 1))
        start = index << level
        width = 1 << CACHE_LEVEL
        block = self._block(start // width)
        offset = start % width
        leaves = block[offset:offset + (1 << level)]
        if len(leaves) != 1 << level:
            raise StateError(f"the chain has no complete subtree at level {level} index {index}")
        return root_of(leaves)

    def subtree(self, start: int, end: int) -> bytes:
        return range_hash(start, end, self.complete)
