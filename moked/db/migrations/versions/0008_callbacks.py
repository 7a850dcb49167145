"""Callbacks: staff phones, callback attempts, a call's follow-up state, business hours

users.phone (E.164, the phone a CRM callback rings first); callback_attempts (one row per
attempt, through Twilio or logged by hand; moked.callbacks owns its state);
calls.follow_up (new, needs_callback, called_back, no_answer, resolved: every call that
was handled becomes resolved) with its history in follow_up_changes; calls.first_reached_at
(the end of the time to callback); businesses.callback_limit_minutes and business hours
(hours_start, hours_end, work_days) for the overdue-callback alert.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.add_column("users", sa.Column("phone", sa.String(length=20)))
    op.add_column(
        "businesses",
        sa.Column("callback_limit_minutes", sa.Integer(), server_default="120", nullable=False),
    )
    op.add_column(
        "businesses", sa.Column("hours_start", sa.Time(), server_default="08:00", nullable=False)
    )
    op.add_column(
        "businesses", sa.Column("hours_end", sa.Time(), server_default="18:00", nullable=False)
    )
    op.add_column(
        "businesses",
        sa.Column(
            "work_days",
            sa.String(length=32),
            server_default="sun,mon,tue,wed,thu",
            nullable=False,
        ),
    )
    op.add_column(
        "calls",
        sa.Column("follow_up", sa.String(length=32), server_default="new", nullable=False),
    )
    op.add_column("calls", sa.Column("first_reached_at", sa.DateTime(timezone=True)))
    # "Handled" is now the follow-up state `resolved`.
    op.execute("UPDATE calls SET follow_up = 'resolved' WHERE handled_at IS NOT NULL")
    op.create_table(
        "callback_attempts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "call_id",
            sa.Integer(),
            sa.ForeignKey("calls.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column("manual", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("staff_number", sa.String(length=20)),
        sa.Column("caller_id", sa.String(length=20)),
        sa.Column("call_sid", sa.String(length=64), unique=True),
        sa.Column("staff_status", sa.String(length=32)),
        sa.Column("dial_call_sid", sa.String(length=64)),
        sa.Column("dial_status", sa.String(length=32)),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True)),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("duration_seconds", sa.Integer()),
        sa.Column("error", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
    )
    op.create_index("ix_callback_attempts_call_id", "callback_attempts", ["call_id"])
    op.create_table(
        "follow_up_changes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "call_id",
            sa.Integer(),
            sa.ForeignKey("calls.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("from_status", sa.String(length=32)),
        sa.Column("to_status", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column(
            "attempt_id",
            sa.Integer(),
            sa.ForeignKey("callback_attempts.id", ondelete="SET NULL"),
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_follow_up_changes_call_id", "follow_up_changes", ["call_id"])


def downgrade() -> None:
    op.drop_index("ix_follow_up_changes_call_id", table_name="follow_up_changes")
    op.drop_table("follow_up_changes")
    op.drop_index("ix_callback_attempts_call_id", table_name="callback_attempts")
    op.drop_table("callback_attempts")
    # A resolved call stays handled (handled_at is kept); the other states have no column.
    op.drop_column("calls", "first_reached_at")
    op.drop_column("calls", "follow_up")
    for column in ("work_days", "hours_end", "hours_start", "callback_limit_minutes"):
        op.drop_column("businesses", column)
    op.drop_column("users", "phone")
