"""The first schema: runs, robustness results and per-sample outcomes.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(64), nullable=False, unique=True),
        sa.Column("track", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dataset", sa.String(100), nullable=False),
        sa.Column("dataset_hash", sa.String(64), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("flags", sa.JSON(), nullable=False),
        sa.Column("provenance", sa.JSON(), nullable=False),
        sa.Column("artifacts", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_runs_track_dataset", "runs", ["track", "dataset"])
    op.create_table(
        "robustness_results",
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("attack", sa.String(100), nullable=False),
        sa.Column("attack_package", sa.String(200), nullable=False),
        sa.Column("attack_version", sa.String(100), nullable=False),
        sa.Column("attack_access", sa.String(32), nullable=False),
        sa.Column("attack_params", sa.JSON(), nullable=False),
        sa.Column("defense", sa.String(100), nullable=False),
        sa.Column("defense_package", sa.String(200), nullable=False),
        sa.Column("defense_version", sa.String(100), nullable=False),
        sa.Column("defense_params", sa.JSON(), nullable=False),
        sa.Column("defense_key", sa.String(64), nullable=False),
        sa.Column("norm", sa.String(8), nullable=False),
        sa.Column("eps", sa.Float(), nullable=False),
        sa.Column("targeted", sa.Boolean(), nullable=False),
        sa.Column("query_budget", sa.Integer(), nullable=True),
        sa.Column("clean_accuracy", sa.Float(), nullable=True),
        sa.Column("robust_accuracy", sa.Float(), nullable=True),
        sa.Column("attack_success_rate", sa.Float(), nullable=True),
        sa.Column("mean_linf", sa.Float(), nullable=True),
        sa.Column("median_linf", sa.Float(), nullable=True),
        sa.Column("mean_l2", sa.Float(), nullable=True),
        sa.Column("median_l2", sa.Float(), nullable=True),
        sa.Column("queries_mean", sa.Float(), nullable=True),
        sa.Column("queries_max", sa.Integer(), nullable=True),
        sa.Column("forward_passes", sa.Integer(), nullable=True),
        sa.Column("backward_passes", sa.Integer(), nullable=True),
    )
    op.create_index("ix_robustness_threat", "robustness_results", ["norm", "eps", "targeted"])
    op.create_index("ix_robustness_defense_key", "robustness_results", ["defense_key"])
    op.create_table(
        "samples",
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("index", sa.Integer(), primary_key=True),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.Column("target", sa.Integer(), nullable=True),
        sa.Column("clean_pred", sa.Integer(), nullable=False),
        sa.Column("adv_pred", sa.Integer(), nullable=False),
        sa.Column("clean_correct", sa.Boolean(), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("robust", sa.Boolean(), nullable=False),
        sa.Column("linf", sa.Float(), nullable=False),
        sa.Column("l2", sa.Float(), nullable=False),
        sa.Column("queries", sa.Integer(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("samples")
    op.drop_index("ix_robustness_defense_key", "robustness_results")
    op.drop_index("ix_robustness_threat", "robustness_results")
    op.drop_table("robustness_results")
    op.drop_index("ix_runs_track_dataset", "runs")
    op.drop_table("runs")
