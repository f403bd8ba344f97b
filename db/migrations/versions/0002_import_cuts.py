"""import cuts: how a piece was cut from its source, and stale analysis runs

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 02:45:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('captures', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source_cut', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('source_cut_why', sa.Text(), nullable=True))
        batch_op.create_index(batch_op.f('ix_captures_source_sha256'), ['source_sha256'], unique=False)
    with op.batch_alter_table('analysis_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stale_reason', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('analysis_runs', schema=None) as batch_op:
        batch_op.drop_column('stale_reason')
    with op.batch_alter_table('captures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_captures_source_sha256'))
        batch_op.drop_column('source_cut_why')
        batch_op.drop_column('source_cut')
