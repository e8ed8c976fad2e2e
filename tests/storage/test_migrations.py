"""Migrations build the schema from empty, are idempotent, and match the models exactly."""

import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Integer, MetaData, Table, inspect

import emotional_engine
from emotional_engine.storage import Store
from emotional_engine.storage.migrate import alembic_config, downgrade
from emotional_engine.storage.schema import Base

SRC = str(Path(emotional_engine.__file__).parents[1])
TABLES = {"api_keys", "stories", "sessions", "session_turns", "jobs", "feedback", "usage", "cache_entries"}


def _revision(store: Store) -> str | None:
    with store.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_migrate_from_empty_creates_every_table_at_head(store_url):
    store = Store(store_url)
    assert not TABLES & set(inspect(store.engine).get_table_names())
    store.migrate()
    assert TABLES <= set(inspect(store.engine).get_table_names())
    assert _revision(store) == ScriptDirectory.from_config(alembic_config()).get_current_head()
    store.close()


def test_migrate_is_idempotent_and_keeps_data(store_url):
    first = Store(store_url)
    first.migrate()
    plain, _ = first.create_key("kept")
    first.migrate()
    first.close()
    again = Store(store_url)  # a restarted server migrates again
    again.migrate()
    assert again.verify_key(plain) is not None
    again.close()


# imports first, then waits for "go" on stdin, so the migrations themselves overlap
MIGRATOR = (
    "import sys; from emotional_engine.storage import Store; store = Store(sys.argv[1]); "
    "print('ready', flush=True); sys.stdin.readline(); store.migrate()"
)


def test_replicas_starting_together_migrate_one_after_another(store_url):
    """Three processes migrate an empty database at the same moment: all succeed (without the lock,
    all but one failed with "table already exists", or a duplicate key in PostgreSQL's catalog)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATOR, store_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"},
        )
        for _ in range(3)
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    store = Store(store_url)
    assert _revision(store) == ScriptDirectory.from_config(alembic_config()).get_current_head()
    store.close()


def test_a_replica_connecting_while_another_holds_the_write_lock_waits_for_it(tmp_path):
    """The first connection turns the database to WAL, which needs its exclusive lock; SQLite
    answered "database is locked" at once, ignoring the busy timeout (a CI failure of the test above)."""
    path = tmp_path / "engine.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE t (x)")
    other.execute("BEGIN IMMEDIATE")  # another replica, migrating
    released = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    released.start()
    store = Store(f"sqlite:///{path}")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert not released.is_alive()  # it did wait for the other's commit
    store.close()
    other.close()


def test_threads_migrating_together_do_not_trip_over_alembic(store_url):
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda _: Store(store_url).migrate(), range(3)))


def test_models_and_migrations_do_not_drift(store):
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, Base.metadata) == []
        # the comparison does see a model the migrations lack
        changed = MetaData()
        for table in Base.metadata.tables.values():
            table.to_metadata(changed)
        Table("extra", changed, Column("id", Integer, primary_key=True))
        assert [d[0] for d in compare_metadata(ctx, changed)] == ["add_table"]


def test_downgrade_to_base_removes_the_schema_and_upgrade_restores_it(store):
    downgrade(store.engine, "base")
    assert not TABLES & set(inspect(store.engine).get_table_names())
    store.migrate()
    assert TABLES <= set(inspect(store.engine).get_table_names())
