"""Superseded runs: a recomputation replaces a result without deleting it.

``runs.key`` becomes unique among current runs only (``superseded_by`` NULL); ``lineage`` (the
identity without the plugins' code) is filled in with the key of every stored run, which was
computed without code.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

CURRENT = "superseded_by IS NULL"


def upgrade() -> None:
    bind = op.get_bind()
    unique = [c for c in sa.inspect(bind).get_unique_constraints("runs") if c["column_names"] == ["key"]]
    # SQLite's constraint has no name: the naming convention gives the reflected one a name to drop.
    with op.batch_alter_table("runs", naming_convention={"uq": "uq_%(table_name)s_%(column_0_name)s"},
                              table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.add_column(sa.Column("lineage", sa.String(64), nullable=True))
        batch.add_column(sa.Column("superseded_by", sa.Integer(), nullable=True))
        if unique:
            batch.drop_constraint(unique[0]["name"] or "uq_runs_key", type_="unique")
    runs = sa.table("runs", sa.column("key"), sa.column("lineage"))
    bind.execute(runs.update().values(lineage=runs.c.key))
    op.create_index("ix_runs_lineage", "runs", ["lineage"])
    op.create_index("ux_runs_current_key", "runs", ["key"], unique=True, sqlite_where=sa.text(CURRENT),
                    postgresql_where=sa.text(CURRENT))


def downgrade() -> None:
    # Only current runs fit a unique key; the rows of the others go with them (explicitly: the
    # store migrates with foreign keys off).
    superseded = "SELECT id FROM runs WHERE superseded_by IS NOT NULL"
    for table in ("samples", "robustness_results", "generative_results"):
        op.execute(f"DELETE FROM {table} WHERE run_id IN ({superseded})")
    op.execute("DELETE FROM runs WHERE superseded_by IS NOT NULL")
    op.drop_index("ux_runs_current_key", "runs")
    op.drop_index("ix_runs_lineage", "runs")
    with op.batch_alter_table("runs", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("superseded_by")
        batch.drop_column("lineage")
        batch.create_unique_constraint("uq_runs_key", ["key"])
