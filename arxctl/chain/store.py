"""Appending to and reading the chain inside the state database's transactions."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from arxctl.chain.records import GENESIS, Record
from arxctl.clock import now_ts


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


def append(conn: sqlite3.Connection, entry: Entry) -> Record:
    """Append one record; call inside `Store.transaction()` so it commits with the change it records."""
    return append_many(conn, [entry])[0]


def append_many(conn: sqlite3.Connection, entries: Iterable[Entry]) -> list[Record]:
    """Append records in order within the caller's transaction (the write lock serializes appenders)."""
    if not conn.in_transaction:
        raise RuntimeError("chain appends must run inside a write transaction")
    seq, prev = tip(conn)
    out: list[Record] = []
    rows = []
    for entry in entries:
        seq += 1
        record = Record.build(
            seq=seq, ts=entry.ts or now_ts(), type=entry.type, agent=entry.agent, actor=entry.actor,
            body=entry.body, prev=prev,
        )
        prev = record.hash
        out.append(record)
        rows.append((record.seq, record.ts, record.type, record.agent, record.actor, record.hash, record.line()))
    conn.executemany("INSERT INTO chain (seq, ts, type, agent, actor, hash, line) VALUES (?,?,?,?,?,?,?)", rows)
    return out


def iter_lines(
    conn: sqlite3.Connection, *, agent: str | None = None, start: int = 1, batch: int = 10_000
) -> Iterator[str]:
    """Stored record lines in seq order, streamed in batches."""
    next_seq = start
    while True:
        if agent is None:
            rows = conn.execute(
                "SELECT seq, line FROM chain WHERE seq >= ? ORDER BY seq LIMIT ?", (next_seq, batch)
            ).fetchall()
        else:
            rows = conn.execute(
                "SELECT seq, line FROM chain WHERE agent = ? AND seq >= ? ORDER BY seq LIMIT ?",
                (agent, next_seq, batch),
            ).fetchall()
        if not rows:
            return
        for _, line in rows:
            yield line
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
