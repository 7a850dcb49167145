"""Callers: a number within a business, its name, blocks and spam flags

callers (business_id, number unique together; name; blocked with when and by whom;
flagged_spam_at; first_seen), filled from the calls so far; calls.blocked (the call came
from a blocked caller and was rejected); ix_calls_business_caller for a caller's calls.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "callers",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "business_id",
            sa.Integer(),
            sa.ForeignKey("businesses.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200)),
        sa.Column("blocked", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("blocked_at", sa.DateTime(timezone=True)),
        sa.Column("blocked_by_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column("flagged_spam_at", sa.DateTime(timezone=True)),
        sa.Column(
            "first_seen", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.UniqueConstraint("business_id", "number", name="uq_callers_business_number"),
    )
    op.create_index(
        "ix_callers_listed",
        "callers",
        ["business_id"],
        postgresql_where=sa.text("blocked IS true OR flagged_spam_at IS NOT NULL"),
    )
    op.add_column(
        "calls", sa.Column("blocked", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.create_index(
        "ix_calls_business_caller",
        "calls",
        ["business_id", "from_number", sa.text("coalesce(started_at, created_at)")],
    )
    # Every E.164 number that called a business so far is its caller, first seen then.
    op.execute(
        """
        INSERT INTO callers (business_id, number, first_seen)
        SELECT business_id, from_number, min(coalesce(started_at, created_at))
        FROM calls
        WHERE business_id IS NOT NULL AND from_number ~ '^\\+[1-9][0-9]{6,14}$'
        GROUP BY business_id, from_number
        """
    )


def downgrade() -> None:
    op.drop_index("ix_calls_business_caller", table_name="calls")
    op.drop_column("calls", "blocked")
    op.drop_index("ix_callers_listed", table_name="callers")
    op.drop_table("callers")
