"""Track results: the rows of tracks registered through ``register_tracks`` that keep no table
of their own (a subject and metrics, both JSON, per run).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "track_results",
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("subject", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    # The runs of those tracks go with their results (explicitly: the store migrates with foreign keys off).
    runs = "SELECT run_id FROM track_results"
    op.execute(f"DELETE FROM samples WHERE run_id IN ({runs})")
    op.execute(f"DELETE FROM runs WHERE id IN ({runs})")
    op.drop_table("track_results")
