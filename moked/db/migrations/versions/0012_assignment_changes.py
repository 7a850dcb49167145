"""Who a call was assigned to, by whom and when (issue 12: every change in the timeline)

assignment_changes: one row per change of calls.assignee_id (None: unassigned).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 06:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "assignment_changes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "call_id", sa.Integer(), sa.ForeignKey("calls.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "assignee_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column(
            "by_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_assignment_changes_call_id", "assignment_changes", ["call_id"])


def downgrade() -> None:
    op.drop_index("ix_assignment_changes_call_id", table_name="assignment_changes")
    op.drop_table("assignment_changes")
