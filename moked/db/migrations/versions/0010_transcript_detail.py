"""Transcripts in detail (issue 15): timed segments, the language heard, staff's language

recordings.transcript_segments (JSONB: [{start, end, text, avg_logprob, no_speech_prob}]),
recordings.detected_language and language_probability (Whisper's detector, among the
languages the business expects), recordings.forced_language (staff asked for a language
when transcribing again), and businesses.expected_languages (the languages its callers may
speak besides its own; null = EXPECTED_LANGUAGES).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "recordings",
        sa.Column("transcript_segments", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.add_column("recordings", sa.Column("detected_language", sa.String(16), nullable=True))
    op.add_column("recordings", sa.Column("language_probability", sa.Float(), nullable=True))
    op.add_column("recordings", sa.Column("forced_language", sa.String(16), nullable=True))
    op.add_column(
        "businesses", sa.Column("expected_languages", postgresql.ARRAY(sa.String(8)), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("businesses", "expected_languages")
    op.drop_column("recordings", "forced_language")
    op.drop_column("recordings", "language_probability")
    op.drop_column("recordings", "detected_language")
    op.drop_column("recordings", "transcript_segments")
