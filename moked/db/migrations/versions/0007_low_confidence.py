"""Low-confidence transcripts: staff should listen rather than trust the text

recordings.low_confidence (false for every existing transcript) and
recordings.low_confidence_reason (why, e.g. Hebrew transcribed by Whisper base because no
Hebrew model is installed and no OpenAI key is set).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "recordings",
        sa.Column("low_confidence", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column("recordings", sa.Column("low_confidence_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("recordings", "low_confidence_reason")
    op.drop_column("recordings", "low_confidence")
