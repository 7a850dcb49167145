"""Membership roles: an owner of a business manages its notification rules in the CRM

memberships.role: "owner" or "member" (every existing membership is a member; an admin
makes someone an owner with `moked user add --business X --owner`).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "memberships",
        sa.Column("role", sa.String(length=32), server_default="member", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("memberships", "role")
