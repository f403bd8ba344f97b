"""The catalog's engine and schema: SQLAlchemy engines for SQLite and PostgreSQL, and migrations.

SQLite gets WAL, foreign keys, a busy timeout and transactional DDL; a write
begins holding the lock (``BEGIN IMMEDIATE``) when :data:`write_intent` says so.
:func:`migrate` brings a catalog's schema to the newest Alembic revision, and
opens a catalog already there without loading Alembic.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError

from echolab.db.errors import CatalogError
from echolab.db.records import SCHEMA_REVISION

MIGRATIONS = Path(__file__).parent / "migrations"
DEFAULT_LOCK_TIMEOUT_S = 60.0  # how long a writer waits for another one (lab setting catalog_lock_timeout_s)
MAX_LOCK_TIMEOUT_S = 86400.0  # a day: longer is a mistake (and inf cannot be given to SQLite)
PG_LOCK_KEY = 0x6563686F  # "echo": the advisory lock every writer of a PostgreSQL catalog takes
write_intent = threading.local()  # its ``begin`` is set while a write transaction begins, so BEGIN takes the lock


def _alembic_config() -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _sqlite_connect(timeout_ms: int) -> Any:
    def connect(dbapi_conn: Any, _record: Any) -> None:
        # The driver's own transaction handling is off (it would run DDL outside any
        # transaction): SQLAlchemy emits BEGIN itself (_sqlite_begin), so a migration
        # interrupted half-way leaves no half-made schema.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={timeout_ms}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.close()
    return connect


def _sqlite_begin(conn: Any) -> None:
    # A write takes the lock when it begins (IMMEDIATE), waiting up to the busy
    # timeout for another writer; a deferred transaction that turns into a write
    # later fails at once instead of waiting. Reads begin deferred and never block.
    conn.exec_driver_sql("BEGIN IMMEDIATE" if getattr(write_intent, "begin", False) else "BEGIN")


def process_name() -> str:
    """This process in a few words: its id and command line (what a waiting writer is told)."""
    argv = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv)) or "python"
    return f"pid {os.getpid()} on {socket.gethostname()} ({argv[:120]})"


def make_engine(url: str, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> Engine:
    """An engine for *url*; SQLite gets WAL, foreign keys, a busy timeout and transactional DDL.

    A PostgreSQL connection names its process (``application_name``), so a
    writer left waiting can say who holds the catalog.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": lock_timeout_s})
        event.listen(engine, "connect", _sqlite_connect(int(lock_timeout_s * 1000)))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    args = {"application_name": f"echolab {process_name()}"[:63]} if "psycopg" in url or url.startswith(
        "postgresql") else {}
    return create_engine(url, pool_pre_ping=True, connect_args=args)


def _current_revision(engine: Engine) -> str | None:
    """The catalog's schema revision, read without Alembic (``None`` when it cannot be read)."""
    try:
        with engine.connect() as conn:
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            conn.rollback()
            return revision
    except SQLAlchemyError:
        return None


def migrate(engine: Engine) -> str:
    """Bring the catalog's schema up to date; refuse a schema newer than this echolab.

    A catalog already at :data:`~echolab.db.records.SCHEMA_REVISION` is opened without
    loading Alembic (most opens: it saves a third of a second on every command)."""
    if _current_revision(engine) == SCHEMA_REVISION:
        return SCHEMA_REVISION
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = _alembic_config()
    script = ScriptDirectory.from_config(cfg)
    head = script.get_current_head()
    try:
        with engine.connect() as conn:  # a read: opening a current catalog never waits for a writer
            current = MigrationContext.configure(conn).get_current_revision()
            conn.rollback()
        _check_known(script, current, head)
        if current != head:
            write_intent.begin = True  # a migration is a write: take the lock up front, then look again
            with engine.begin() as conn:
                write_intent.begin = False
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_LOCK_KEY})")
                current = MigrationContext.configure(conn).get_current_revision()
                _check_known(script, current, head)
                if current != head:
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
    except CatalogError:
        raise
    except SQLAlchemyError as exc:
        raise CatalogError(f"cannot open the catalog at {engine.url!r}: {short_error(exc)}") from exc
    finally:
        write_intent.begin = False
    return head or ""


def _check_known(script: Any, current: str | None, head: str | None) -> None:
    from alembic.util.exc import CommandError

    if current is None:
        return
    try:
        script.get_revision(current)
    except CommandError:
        raise CatalogError(
            f"the catalog has schema revision {current}, newer than this echolab "
            f"knows (up to {head}); upgrade echolab to open it"
        ) from None


def short_error(exc: Exception) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__



__all__ = ["DEFAULT_LOCK_TIMEOUT_S", "MAX_LOCK_TIMEOUT_S", "MIGRATIONS", "PG_LOCK_KEY", "make_engine", "migrate",
           "process_name", "short_error", "write_intent"]
