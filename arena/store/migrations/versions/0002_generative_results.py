"""Generative results: one row per generative run (likelihood and sample quality).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "generative_results",
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("generator", sa.String(100), nullable=False),
        sa.Column("generator_package", sa.String(200), nullable=False),
        sa.Column("generator_version", sa.String(100), nullable=False),
        sa.Column("generator_params", sa.JSON(), nullable=False),
        sa.Column("model_key", sa.String(64), nullable=False),
        sa.Column("likelihood_kind", sa.String(16), nullable=True),
        sa.Column("bits_per_dim", sa.Float(), nullable=True),
        sa.Column("likelihoods", sa.JSON(), nullable=False),
        sa.Column("uniform_bits_per_dim", sa.Float(), nullable=False),
        sa.Column("likelihood_n", sa.Integer(), nullable=True),
        sa.Column("samples_n", sa.Integer(), nullable=False),
        sa.Column("reference_n", sa.Integer(), nullable=False),
        sa.Column("classifier_sha256", sa.String(64), nullable=False),
        sa.Column("classifier_accuracy", sa.Float(), nullable=False),
        sa.Column("fid", sa.Float(), nullable=True),
        sa.Column("fid_low", sa.Float(), nullable=True),
        sa.Column("fid_high", sa.Float(), nullable=True),
        sa.Column("kid", sa.Float(), nullable=True),
        sa.Column("precision", sa.Float(), nullable=True),
        sa.Column("recall", sa.Float(), nullable=True),
        sa.Column("density", sa.Float(), nullable=True),
        sa.Column("coverage", sa.Float(), nullable=True),
        sa.Column("inception_score", sa.Float(), nullable=True),
        sa.Column("train_seconds", sa.Float(), nullable=True),
        sa.Column("sample_seconds", sa.Float(), nullable=True),
    )
    op.create_index("ix_generative_classifier", "generative_results", ["classifier_sha256"])
    op.create_index("ix_generative_model_key", "generative_results", ["model_key"])


def downgrade() -> None:
    op.drop_index("ix_generative_model_key", "generative_results")
    op.drop_index("ix_generative_classifier", "generative_results")
    op.drop_table("generative_results")
