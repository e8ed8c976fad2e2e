"""Migrations build the schema from empty, are idempotent, and match the models exactly."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Integer, MetaData, Table, inspect

from emotional_engine.storage import Store
from emotional_engine.storage.migrate import alembic_config, downgrade
from emotional_engine.storage.schema import Base

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
