"""behaviour calibrations: versioned probe, τ_search and PSIM thresholds per base

Revision ID: 7d2f5c8e1a46
Revises: 9c4e2a7b1f03
Create Date: 2026-12-03 22:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7d2f5c8e1a46"
down_revision: str | Sequence[str] | None = "9c4e2a7b1f03"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "behaviour_calibrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("base_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("thresholds", sa.JSON(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("n_clean", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["base_id"], ["base_models.id"], name=op.f("fk_behaviour_calibrations__base_id__base_models"),
                                ondelete="CASCADE"),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_behaviour_calibrations")),
        sa.UniqueConstraint("base_id", "kind", "version", name=op.f("uq_behaviour_calibrations__base_id_kind_version")),
    )


def downgrade() -> None:
    op.drop_table("behaviour_calibrations")
