"""Notifications: rules per business, one delivery row per call and recipient

notification_rules: who hears about a business's calls (email, SMS, WhatsApp, a signed
webhook), for which calls, and their quiet hours.
notification_deliveries: one alert to one recipient; unique per (call, channel,
recipient), so duplicated callbacks, retried jobs and the reconciler send it once.
calls.alerts_planned_at: when the call's alerts were decided (once).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 03:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.add_column("calls", sa.Column("alerts_planned_at", sa.DateTime(timezone=True)))
    op.create_table(
        "notification_rules",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "business_id",
            sa.Integer(),
            sa.ForeignKey("businesses.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=2048), nullable=False),
        sa.Column("secret", sa.String(length=200)),
        sa.Column("when", sa.String(length=32), nullable=False),
        sa.Column("quiet_start", sa.Time()),
        sa.Column("quiet_end", sa.Time()),
        sa.Column("hold_in_quiet_hours", sa.Boolean(), nullable=False),
        sa.Column("attach_audio", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
    )
    op.create_index(
        op.f("ix_notification_rules_business_id"), "notification_rules", ["business_id"]
    )
    op.create_table(
        "notification_deliveries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "call_id", sa.Integer(), sa.ForeignKey("calls.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "rule_id", sa.Integer(), sa.ForeignKey("notification_rules.id", ondelete="SET NULL")
        ),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("recipient", sa.String(length=2048), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False, unique=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("held_until", sa.DateTime(timezone=True)),
        sa.Column("provider_id", sa.String(length=200)),
        sa.Column("provider_status", sa.String(length=32)),
        sa.Column("provider_error_code", sa.String(length=16)),
        sa.Column("last_error", sa.Text()),
        sa.Column("trigger_at", sa.DateTime(timezone=True)),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.UniqueConstraint("call_id", "channel", "recipient", name="uq_delivery_call_recipient"),
    )
    op.create_index(
        op.f("ix_notification_deliveries_call_id"), "notification_deliveries", ["call_id"]
    )
    op.create_index(
        op.f("ix_notification_deliveries_rule_id"), "notification_deliveries", ["rule_id"]
    )
    op.create_index(
        op.f("ix_notification_deliveries_provider_id"), "notification_deliveries", ["provider_id"]
    )
    op.create_index("ix_deliveries_due", "notification_deliveries", ["status", "next_attempt_at"])
    # The planner's scan: calls whose alerts are not decided yet, newest first.
    op.create_index(
        "ix_calls_alerts_unplanned",
        "calls",
        ["created_at"],
        postgresql_where=sa.text("alerts_planned_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_calls_alerts_unplanned", table_name="calls")
    op.drop_table("notification_deliveries")
    op.drop_table("notification_rules")
    op.drop_column("calls", "alerts_planned_at")
