"""labels and cut checks: the file a capture was imported from, and the verdict of its cut's checks

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 03:30:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('captures', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source_file', sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column('cut_check', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('captures', schema=None) as batch_op:
        batch_op.drop_column('cut_check')
        batch_op.drop_column('source_file')
