"""Databases (sqlite3, aiosqlite, psycopg, psycopg2, asyncpg, SQLAlchemy): the SQL verb decides the action."""

from __future__ import annotations

import re

import libcst as cst

from arxctl.analyze.python import Ctx, Outcome
from arxctl.analyze.rules._base import hit
from arxctl.analyze.values import Obj, Str, known_text, obj

RULE_ID = "ARXA110"
DESCRIPTION = "SQL through a database driver: the statement verb maps to <db>.query.*, schema.*, copy.*"
FAMILIES = ("db",)
MODULES = ("sqlite3", "aiosqlite", "psycopg", "psycopg2", "psycopg_pool", "asyncpg", "sqlalchemy")
ENTRY = (
    "sqlite3.connect", "aiosqlite.connect", "psycopg.connect", "psycopg.Connection", "psycopg.AsyncConnection",
    "psycopg2.connect", "psycopg2.pool", "psycopg_pool", "asyncpg.connect", "asyncpg.create_pool",
    "sqlalchemy.create_engine", "sqlalchemy.engine.create_engine", "sqlalchemy.ext.asyncio.create_async_engine",
    "sqlalchemy.text", "sqlalchemy.sql.text", "sqlalchemy.orm.sessionmaker", "sqlalchemy.orm.Session",
)

_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)
_NO_ACTION = frozenset({"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "SET", "END", "LISTEN", "RESET",
                        "DISCARD", "START", "PREPARE", "DEALLOCATE", "LOCK"})
_EXECUTE = frozenset({"execute", "executemany", "executescript", "fetch", "fetchrow", "fetchval", "exec_driver_sql",
                      "execute_many", "scalar", "scalars"})


def _driver_db(qname: str) -> str:
    top = qname.split(".")[0]
    return "sqlite" if top in ("sqlite3", "aiosqlite") else "postgres"


def _url_db(url: Str | None) -> str:
    prefix = (url.prefix() if url is not None else "").lower()
    if prefix.startswith(("postgresql", "postgres")):
        return "postgres"
    if prefix.startswith("sqlite"):
        return "sqlite"
    dialect = re.match(r"^([a-z0-9]+)(?:\+[a-z0-9_]+)?://", prefix)
    return dialect.group(1) if dialect else "database"


def classify(sql: str, db: str) -> list[tuple[str, str]]:
    """Actions for SQL text (`(action, verb)`, one per statement); an empty list for transaction control."""
    out: list[tuple[str, str]] = []
    for statement in _COMMENTS.sub(" ", sql).split(";"):
        s = statement.strip().lstrip("(").strip()
        if not s:
            continue
        words = s.split()
        first = words[0].upper()
        upper = s.upper()
        if first in _NO_ACTION:
            continue
        if first == "WITH":
            verb = next((w for w in ("INSERT", "UPDATE", "DELETE", "MERGE") if re.search(rf"\b{w}\b", upper)), "SELECT")
            first = verb
        action = _verb_action(first, upper, db)
        out.append((f"{db}.{action}", first))
    return out


def _verb_action(first: str, upper: str, db: str) -> str:
    if first in ("SELECT", "VALUES", "TABLE", "SHOW", "EXPLAIN"):
        catalogs = ("SQLITE_MASTER", "SQLITE_SCHEMA") if db == "sqlite" else ("INFORMATION_SCHEMA", "PG_CATALOG")
        return "schema.read" if any(c in upper for c in catalogs) else "query.select"
    if first in ("INSERT", "REPLACE"):
        return "query.insert"
    if first in ("UPDATE", "MERGE", "UPSERT"):
        return "query.update"
    if first == "DELETE":
        return "query.delete"
    if first in ("GRANT", "REVOKE") or re.match(r"^(CREATE|ALTER|DROP)\s+(ROLE|USER)\b", upper):
        return "privilege.grant" if db == "postgres" else "schema.ddl"
    if first in ("CREATE", "ALTER", "DROP", "TRUNCATE", "COMMENT", "REINDEX"):
        return "schema.ddl"
    if first == "COPY":
        return "copy.export" if re.search(r"\bTO\b", upper) else "copy.import"
    if first == "PRAGMA":
        if "TABLE_INFO" in upper or "INDEX_LIST" in upper or "TABLE_LIST" in upper:
            return "schema.read"
        return "pragma.write" if "=" in upper else "pragma.read"
    if first == "ATTACH":
        return "database.attach"
    if first == "VACUUM":
        return "database.export" if " INTO " in f" {upper} " else "schema.ddl"
    if first in ("ANALYZE", "VACUUM", "CLUSTER", "CALL", "DO"):
        return "query.unresolved"
    return "query.unresolved"


def _sql_hits(node: cst.CSTNode, sql: Str | None, db: str, how: str) -> Outcome:
    text = known_text(sql) if sql is not None else None
    if text is None and sql is not None and sql.prefix().strip():
        text = sql.prefix()
        found = classify(text, db)[:1]
    elif text is not None:
        found = classify(text, db)
    else:
        found = [(f"{db}.query.unresolved", "UNRESOLVED")]
    hits = [
        hit(RULE_ID, node, db, action, f"{how} runs {verb} on {db}", "destructive" if verb == "UNRESOLVED" else None,
            verb=verb)
        for action, verb in found
    ]
    return None, hits


def construct(qname: str, call: cst.Call | None, ctx: Ctx) -> Outcome | None:
    last = qname.rsplit(".", 1)[-1]
    if last == "text":
        return (ctx.arg_string(call, 0, "text") if call is not None else None), []
    if last in ("create_engine", "create_async_engine"):
        return obj("db", "engine", db=_url_db(ctx.arg_string(call, 0, "url") if call is not None else None)), []
    if last == "sessionmaker":
        bind = ctx.arg_value(call, None, "bind") if call is not None else None
        return obj("db", "sessionmaker", db=bind.get("db") if isinstance(bind, Obj) else "database"), []
    if last in ("Session", "AsyncSession"):
        bind = ctx.arg_value(call, 0, "bind") if call is not None else None
        return obj("db", "session", db=bind.get("db") if isinstance(bind, Obj) else "database"), []
    if qname.startswith("psycopg_pool") or qname.startswith("psycopg2.pool") or last == "create_pool":
        return obj("db", "pool", db="postgres"), []
    if last in ("connect", "Connection", "AsyncConnection"):
        return obj("db", "conn", db=_driver_db(qname)), []
    return None


def method(o: Obj, name: str, call: cst.Call, ctx: Ctx) -> Outcome | None:
    db = o.get("db", "database")
    if o.kind in ("conn", "cursor", "session", "engine"):
        if name in _EXECUTE:
            return _sql_hits(call, ctx.arg_string(call, 0, "sql") or _statement(ctx, call), db, f"{o.kind}.{name}")
        if name in ("copy", "copy_expert"):
            return _sql_hits(call, ctx.arg_string(call, 0, "sql"), db, f"{o.kind}.{name}")
        if name in ("copy_from", "copy_records_to_table", "copy_to_table"):
            return None, [hit(RULE_ID, call, db, f"{db}.copy.import", f"{name} bulk-loads into {db}", verb="COPY")]
        if name in ("copy_to", "copy_from_table", "copy_from_query"):
            return None, [hit(RULE_ID, call, db, f"{db}.copy.export", f"{name} exports from {db}", verb="COPY")]
        if name in ("backup", "iterdump") and db == "sqlite":
            return None, [hit(RULE_ID, call, db, "sqlite.database.export", f"sqlite {name}", verb="BACKUP")]
        if name in ("cursor", "connect", "begin", "transaction", "raw_connection", "begin_nested"):
            return obj("db", "cursor" if name == "cursor" else "conn", db=db), []
        if o.kind == "session" and name == "query":
            return None, [hit(RULE_ID, call, db, f"{db}.query.select", "ORM query", verb="SELECT")]
        if o.kind == "session" and name in ("add", "add_all"):
            return None, [hit(RULE_ID, call, db, f"{db}.query.insert", f"ORM {name}", verb="INSERT")]
        if o.kind == "session" and name == "delete":
            return None, [hit(RULE_ID, call, db, f"{db}.query.delete", "ORM delete", verb="DELETE")]
        return None
    if o.kind == "pool" and name in ("connection", "getconn", "acquire"):
        return obj("db", "conn", db=db), []
    if o.kind == "sessionmaker" and name in ("begin",):
        return obj("db", "session", db=db), []
    return None


def _statement(ctx: Ctx, call: cst.Call) -> Str | None:
    return ctx.arg_string(call, None, "statement") or ctx.arg_string(call, None, "query")


def invoke(o: Obj, call: cst.Call, ctx: Ctx) -> Outcome | None:
    if o.kind == "sessionmaker":
        return obj("db", "session", db=o.get("db")), []
    return None
