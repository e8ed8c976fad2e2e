"""Alembic environment, driven programmatically by storage/migrate.py (no alembic.ini): the caller
hands over an open connection in `config.attributes["connection"]`."""

from alembic import context

from emotional_engine.storage.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through emotional_engine.storage (Store.migrate), which passes a connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    compare_type=True,
    render_as_batch=connection.dialect.name == "sqlite",
)  # SQLite alters tables by copying them
with context.begin_transaction():
    context.run_migrations()
