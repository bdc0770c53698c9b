"""Generative results: KID's spread, scores against the test split, memorisation shares, a
noise baseline, the train-split likelihood and the reference classifier's model key (all
nullable: older rows have none).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

FLOATS = ("kid_std", "fid_test", "fid_test_low", "fid_test_high", "kid_test", "kid_test_std", "precision_test",
          "recall_test", "density_test", "coverage_test", "bits_per_dim_train", "memorised", "memorised_pixels",
          "heldout_memorised", "heldout_memorised_pixels", "noise_fid_test", "test_copies", "test_copies_pixels")


def upgrade() -> None:
    with op.batch_alter_table("generative_results") as batch:
        for name in FLOATS:
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))
        batch.add_column(sa.Column("test_n", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("classifier_key", sa.String(64), nullable=True))
    op.create_index("ix_generative_classifier_key", "generative_results", ["classifier_key"])


def downgrade() -> None:
    op.drop_index("ix_generative_classifier_key", "generative_results")
    with op.batch_alter_table("generative_results") as batch:
        for name in (*FLOATS, "test_n", "classifier_key"):
            batch.drop_column(name)
