"""initial schema: bases, adapters, revisions, weight scores, threshold sets, verdicts, runs, probe queue

Revision ID: 003887e4782a
Revises:
Create Date: 2026-11-25 09:32:12.208744
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '003887e4782a'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('base_models',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_base_models')),
    sa.UniqueConstraint('name', name=op.f('uq_base_models__name'))
    )
    op.create_table('runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('command', sa.String(length=100), nullable=False),
    sa.Column('args', sa.JSON(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('counts', sa.JSON(), nullable=False),
    sa.Column('exit_status', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_runs'))
    )
    op.create_table('adapters',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('base_id', sa.Integer(), nullable=False),
    sa.Column('repo_id', sa.String(length=1000), nullable=False),
    sa.Column('author', sa.String(length=300), nullable=True),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('first_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('removed', sa.Boolean(), nullable=False),
    sa.Column('meta', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['base_id'], ['base_models.id'], name=op.f('fk_adapters__base_id__base_models'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_adapters')),
    sa.UniqueConstraint('base_id', 'repo_id', name=op.f('uq_adapters__base_id_repo_id'))
    )
    with op.batch_alter_table('adapters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_adapters__repo_id'), ['repo_id'], unique=False)

    op.create_table('threshold_sets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('base_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('method', sa.String(length=100), nullable=False),
    sa.Column('featureset_version', sa.String(length=40), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('strata', sa.JSON(), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['base_id'], ['base_models.id'], name=op.f('fk_threshold_sets__base_id__base_models'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_threshold_sets')),
    sa.UniqueConstraint('base_id', 'version', name=op.f('uq_threshold_sets__base_id_version'))
    )
    op.create_table('revisions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('adapter_id', sa.Integer(), nullable=False),
    sa.Column('repo_id', sa.String(length=1000), nullable=False),
    sa.Column('sha', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.String(length=100), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('files', sa.JSON(), nullable=False),
    sa.Column('declared_base', sa.String(length=300), nullable=True),
    sa.Column('provenance', sa.JSON(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['adapter_id'], ['adapters.id'], name=op.f('fk_revisions__adapter_id__adapters'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_revisions')),
    sa.UniqueConstraint('adapter_id', 'sha', name=op.f('uq_revisions__adapter_id_sha'))
    )
    with op.batch_alter_table('revisions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_revisions__repo_id_sha'), ['repo_id', 'sha'], unique=False)

    op.create_table('probe_jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('revision_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('priority', sa.Float(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('worker', sa.String(length=200), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['revision_id'], ['revisions.id'], name=op.f('fk_probe_jobs__revision_id__revisions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_probe_jobs')),
    sa.UniqueConstraint('revision_id', name=op.f('uq_probe_jobs__revision_id'))
    )
    with op.batch_alter_table('probe_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_probe_jobs__status_priority'), ['status', 'priority'], unique=False)

    op.create_table('verdicts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('revision_id', sa.Integer(), nullable=False),
    sa.Column('threshold_set_id', sa.Integer(), nullable=False),
    sa.Column('flagged', sa.Boolean(), nullable=True),
    sa.Column('breakdown', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['revision_id'], ['revisions.id'], name=op.f('fk_verdicts__revision_id__revisions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['threshold_set_id'], ['threshold_sets.id'], name=op.f('fk_verdicts__threshold_set_id__threshold_sets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_verdicts')),
    sa.UniqueConstraint('revision_id', 'threshold_set_id', name=op.f('uq_verdicts__revision_id_threshold_set_id'))
    )
    with op.batch_alter_table('verdicts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_verdicts__threshold_set_id'), ['threshold_set_id'], unique=False)

    op.create_table('weight_scores',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('revision_id', sa.Integer(), nullable=False),
    sa.Column('featureset_version', sa.String(length=40), nullable=False),
    sa.Column('score', sa.Float(), nullable=True),
    sa.Column('stratum', sa.String(length=500), nullable=False),
    sa.Column('features', sa.JSON(), nullable=False),
    sa.Column('module_norms', sa.JSON(), nullable=False),
    sa.Column('summary', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['revision_id'], ['revisions.id'], name=op.f('fk_weight_scores__revision_id__revisions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_weight_scores')),
    sa.UniqueConstraint('revision_id', 'featureset_version', name=op.f('uq_weight_scores__revision_id_featureset_version'))
    )
    with op.batch_alter_table('weight_scores', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_weight_scores__stratum'), ['stratum'], unique=False)

    op.create_table('probe_results',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('revision_id', sa.Integer(), nullable=False),
    sa.Column('result', sa.JSON(), nullable=False),
    sa.Column('flagged', sa.Boolean(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['probe_jobs.id'], name=op.f('fk_probe_results__job_id__probe_jobs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['revision_id'], ['revisions.id'], name=op.f('fk_probe_results__revision_id__revisions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_probe_results'))
    )
    with op.batch_alter_table('probe_results', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_probe_results__job_id'), ['job_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_probe_results__revision_id'), ['revision_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('probe_results', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_probe_results__revision_id'))
        batch_op.drop_index(batch_op.f('ix_probe_results__job_id'))

    op.drop_table('probe_results')
    with op.batch_alter_table('weight_scores', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_weight_scores__stratum'))

    op.drop_table('weight_scores')
    with op.batch_alter_table('verdicts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_verdicts__threshold_set_id'))

    op.drop_table('verdicts')
    with op.batch_alter_table('probe_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_probe_jobs__status_priority'))

    op.drop_table('probe_jobs')
    with op.batch_alter_table('revisions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_revisions__repo_id_sha'))

    op.drop_table('revisions')
    op.drop_table('threshold_sets')
    with op.batch_alter_table('adapters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_adapters__repo_id'))

    op.drop_table('adapters')
    op.drop_table('runs')
    op.drop_table('base_models')
