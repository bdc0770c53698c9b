"""Alembic environment: always run by arena.store on a connection it already holds."""

from __future__ import annotations

from alembic import context

from arena.store.schema import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite alters tables by copying them
)
with context.begin_transaction():
    context.run_migrations()
