"""lineage: adapter fingerprints, imported blocklist fingerprints, downstream Hub repos

Revision ID: 9c4e2a7b1f03
Revises: 5b1c0e9d7a21
Create Date: 2026-12-03 16:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9c4e2a7b1f03"
down_revision: str | Sequence[str] | None = "5b1c0e9d7a21"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "fingerprints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=20), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("n_modules", sa.Integer(), nullable=False),
        sa.Column("vec", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["revision_id"], ["revisions.id"], name=op.f("fk_fingerprints__revision_id__revisions"),
                                ondelete="CASCADE"),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fingerprints")),
        sa.UniqueConstraint("revision_id", "version", name=op.f("uq_fingerprints__revision_id_version")),
    )
    with op.batch_alter_table("fingerprints", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fingerprints__version"), ["version"], unique=False)
    op.create_table(
        "blocklist_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("base_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=1100), nullable=False),
        sa.Column("source", sa.String(length=1000), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("version", sa.String(length=20), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("n_modules", sa.Integer(), nullable=False),
        sa.Column("vec", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["base_id"], ["base_models.id"], name=op.f("fk_blocklist_entries__base_id__base_models"),
                                ondelete="CASCADE"),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blocklist_entries")),
        sa.UniqueConstraint("base_id", "label", "version", name=op.f("uq_blocklist_entries__base_id_label_version")),
    )
    op.create_table(
        "downstream_repos",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("adapter_id", sa.Integer(), nullable=False),
        sa.Column("repo_id", sa.String(length=1000), nullable=False),
        sa.Column("relation", sa.String(length=20), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["adapter_id"], ["adapters.id"], name=op.f("fk_downstream_repos__adapter_id__adapters"),
                                ondelete="CASCADE"),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_downstream_repos")),
        sa.UniqueConstraint("adapter_id", "repo_id", "relation", name=op.f("uq_downstream_repos__adapter_id_repo_id_relation")),
    )


def downgrade() -> None:
    op.drop_table("downstream_repos")
    op.drop_table("blocklist_entries")
    with op.batch_alter_table("fingerprints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fingerprints__version"))
    op.drop_table("fingerprints")
