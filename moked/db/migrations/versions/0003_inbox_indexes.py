"""Inbox indexes: calls newest first, per business and across businesses

The CRM lists calls ordered by coalesce(started_at, created_at), id; the old
(business_id, started_at) index matched neither that order nor any other query.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 02:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_CALL_TIME = sa.text("coalesce(started_at, created_at)")


def upgrade() -> None:
    op.drop_index("ix_calls_business_started", table_name="calls")
    op.create_index("ix_calls_business_inbox", "calls", ["business_id", _CALL_TIME, "id"])
    op.create_index("ix_calls_inbox", "calls", [_CALL_TIME, "id"])


def downgrade() -> None:
    op.drop_index("ix_calls_inbox", table_name="calls")
    op.drop_index("ix_calls_business_inbox", table_name="calls")
    op.create_index("ix_calls_business_started", "calls", ["business_id", "started_at"])
