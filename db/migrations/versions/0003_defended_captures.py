"""defended captures: a trace capture made by a defense from another capture

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 22:30:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('captures', schema=None) as batch_op:
        batch_op.add_column(sa.Column('defended_from', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('defense', sa.String(length=300), nullable=True))
        batch_op.create_index(batch_op.f('ix_captures_defended_from'), ['defended_from'], unique=False)
        batch_op.create_foreign_key('fk_captures_defended_from', 'captures', ['defended_from'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('captures', schema=None) as batch_op:
        batch_op.drop_constraint('fk_captures_defended_from', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_captures_defended_from'))
        batch_op.drop_column('defense')
        batch_op.drop_column('defended_from')
