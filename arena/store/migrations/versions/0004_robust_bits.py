"""Per-run packed robust outcomes, the leaderboard's worst-case input (see ``robust_bits``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("robustness_results") as batch:
        batch.add_column(sa.Column("robust_bits", sa.LargeBinary(), nullable=True))
    # Fill it in for the results already stored, from their samples.
    bind = op.get_bind()
    results = sa.table("robustness_results", sa.column("run_id"), sa.column("robust_bits"))
    samples = sa.table("samples", sa.column("run_id"), sa.column("index"), sa.column("robust"))
    rows = bind.execute(sa.select(samples.c.run_id, samples.c.index, samples.c.robust)
                        .order_by(samples.c.run_id, samples.c.index))
    outcomes: dict[int, tuple[list[int], list[bool]]] = {}
    for run_id, index, robust in rows:
        indices, values = outcomes.setdefault(run_id, ([], []))
        indices.append(index)
        values.append(bool(robust))
    for run_id, (indices, values) in outcomes.items():
        if indices == list(range(len(indices))):
            bits = np.packbits(np.array(values, dtype=bool), bitorder="little").tobytes()
            bind.execute(results.update().where(results.c.run_id == run_id).values(robust_bits=bits))


def downgrade() -> None:
    with op.batch_alter_table("robustness_results") as batch:
        batch.drop_column("robust_bits")
