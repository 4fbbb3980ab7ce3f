"""mail pauses: a customer's "pause all mail for 30 or 90 days", chosen on the unsubscribe page

Revision: 0003
Revises: 0002
Created: 2026-11-30 07:00:47.297667
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mail_pauses",
        sa.Column("email_key", sa.String(), nullable=False),
        sa.Column("until", sa.DateTime(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("email_key"),
    )


def downgrade() -> None:
    op.drop_table("mail_pauses")
