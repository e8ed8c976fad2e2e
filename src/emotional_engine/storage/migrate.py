"""Alembic, configured in code so an installed package can migrate its own database.

Replicas starting together must not race: each migration runs in one transaction that first takes
a lock the others wait on (PostgreSQL: an advisory lock; SQLite: the write lock, which also makes
SQLite's DDL transactional, since Python's sqlite3 would autocommit it). The others then find the
schema at head and do nothing. Within one process a thread lock serialises too: Alembic's
`context` is module-global and not thread-safe.
"""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, text

MIGRATIONS = Path(__file__).with_name("migrations")
PG_LOCK_ID = 0x45455F4D4947  # "EE_MIG": any fixed number shared by every replica
_in_process = threading.Lock()


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _lock_out_other_migrators(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": PG_LOCK_ID})
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def upgrade(engine: Engine, revision: str = "head") -> None:
    with _in_process, engine.begin() as conn:
        _lock_out_other_migrators(conn)
        command.upgrade(alembic_config(conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    with _in_process, engine.begin() as conn:
        _lock_out_other_migrators(conn)
        command.downgrade(alembic_config(conn), revision)
