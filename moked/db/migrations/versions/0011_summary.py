"""A voicemail's summary and intent (issue 15, SUMMARY_BACKEND=openai)

recordings.summary (one short summary in the business's language), recordings.intent
(callback_request, order, complaint, question, spam, other) and recordings.summary_model.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 05:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("recordings", sa.Column("summary", sa.Text(), nullable=True))
    op.add_column("recordings", sa.Column("intent", sa.String(32), nullable=True))
    op.add_column("recordings", sa.Column("summary_model", sa.String(200), nullable=True))


def downgrade() -> None:
    op.drop_column("recordings", "summary_model")
    op.drop_column("recordings", "intent")
    op.drop_column("recordings", "summary")
