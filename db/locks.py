"""The catalog's write lock: one writer at a time, and who holds it when another waits.

A write transaction takes the lock when it begins (SQLite: ``BEGIN IMMEDIATE``;
PostgreSQL: an advisory lock), so writers in several processes wait their turn
instead of failing half-way. On SQLite the holder writes a note in the lab's
``tmp/`` (:data:`HOLDER_FILE`), so a writer that waits in vain can say which
process holds the lab; on PostgreSQL the server says it.
"""

from __future__ import annotations

import json
import os

from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from echolab.db.engine import PG_LOCK_KEY, process_name, write_intent
from echolab.db.errors import CatalogBusyError
from echolab.db.records import utcnow
from echolab.labdir import LabDir

HOLDER_FILE = "catalog-writer.json"  # in the lab's tmp/ while a process holds the write lock (SQLite)


class WriteLock:
    """The write lock of one catalog (its engine) in one lab, waited for up to *lock_timeout_s*."""

    def __init__(self, engine: Engine, lab: LabDir, lock_timeout_s: float) -> None:
        self.engine = engine
        self.lab = lab
        self.lock_timeout_s = lock_timeout_s

    def acquire(self, session: Session) -> None:
        """Begin *session*'s transaction holding the write lock (waiting for it up to the timeout)."""
        postgres = self.engine.dialect.name == "postgresql"
        write_intent.begin = True
        try:
            session.connection()
            if postgres:
                session.execute(text(f"SET LOCAL lock_timeout = '{int(self.lock_timeout_s * 1000)}ms'"))
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
        except OperationalError as exc:
            session.rollback()
            message = str(exc.orig or exc).lower()
            if "locked" in message or "lock timeout" in message or "busy" in message:
                raise CatalogBusyError(
                    f"the catalog stayed locked for {self.lock_timeout_s:g} s: {self.holder()} is writing to "
                    f"the lab; try again when it is done (or raise catalog_lock_timeout_s in echolab.toml)"
                ) from exc
            raise
        finally:
            write_intent.begin = False
        if not postgres:
            self._note_holder()

    def _note_holder(self) -> None:
        """Write who holds the SQLite write lock now, for a writer that waits in vain."""
        try:
            path = self.lab.tmp_dir / HOLDER_FILE
            tmp = path.with_name(f"{path.name}.{os.getpid()}")
            tmp.write_text(json.dumps({"pid": os.getpid(), "process": process_name(),
                                       "since": utcnow().isoformat(timespec="seconds")}))
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only lab directory: the waiting writer is told less

    def release(self) -> None:
        """The lock is released: remove the note, unless the next writer has already written its own."""
        if self.engine.dialect.name == "postgresql":
            return
        path = self.lab.tmp_dir / HOLDER_FILE
        try:
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()
        except (OSError, ValueError, AttributeError):
            pass

    def holder(self) -> str:
        """Which process holds the lab's write lock, as far as can be told."""
        if self.engine.dialect.name == "postgresql":
            try:
                with self.engine.connect() as conn:
                    row = conn.execute(text(
                        "SELECT a.pid, a.application_name, a.xact_start FROM pg_locks l "
                        "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                        "AND l.objid = :key"), {"key": PG_LOCK_KEY}).first()
                    conn.rollback()
            except SQLAlchemyError:
                row = None
            if row is None:
                return "another process"
            return f"{row.application_name or 'a client'} (server pid {row.pid}, since {row.xact_start:%H:%M:%S})"
        try:
            info = json.loads((self.lab.tmp_dir / HOLDER_FILE).read_text())
        except (OSError, ValueError):
            return "another process (it did not say which)"
        alive = True
        try:
            os.kill(int(info["pid"]), 0)
        except ProcessLookupError:
            alive = False
        except (OSError, ValueError, KeyError):
            pass
        state = f"since {info.get('since', '?')}" if alive else "which has ended; another process holds it now"
        return f"{info.get('process', 'another process')} ({state})"


__all__ = ["HOLDER_FILE", "WriteLock"]
