"""A session turn's remembered facts (the story memory's part for that beat), so a session rebuilt from
the store (after a restart, on another replica) recalls what it had, player edits included.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("session_turns") as batch:
        batch.add_column(sa.Column("facts", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("session_turns") as batch:
        batch.drop_column("facts")
