"""CRM: users, memberships, API tokens, tags, notes, handled/assignee, transcript search

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 22:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _now() -> sa.Column[sa.DateTime]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    # pg_trgm is a trusted extension (PostgreSQL 13+): the database owner may create it.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        _now(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    op.create_table(
        "memberships",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("business_id", sa.Integer(), nullable=False),
        _now(),
        sa.ForeignKeyConstraint(["business_id"], ["businesses.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "business_id"),
    )
    op.create_index(
        op.f("ix_memberships_business_id"), "memberships", ["business_id"], unique=False
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        _now(),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index(op.f("ix_api_tokens_user_id"), "api_tokens", ["user_id"], unique=False)
    op.create_table(
        "tags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("business_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        _now(),
        sa.ForeignKeyConstraint(["business_id"], ["businesses.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("business_id", "name"),
    )
    op.create_table(
        "call_tags",
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("tag_id", sa.Integer(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        _now(),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tag_id"], ["tags.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["created_by_id"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("call_id", "tag_id"),
    )
    op.create_index(op.f("ix_call_tags_tag_id"), "call_tags", ["tag_id"], unique=False)
    op.create_table(
        "notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        _now(),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["author_id"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_notes_call_id"), "notes", ["call_id"], unique=False)
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column(
            "attempted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_login_attempts_email_at", "login_attempts", ["email", "attempted_at"], unique=False
    )
    op.create_index(
        "ix_login_attempts_ip_at", "login_attempts", ["ip", "attempted_at"], unique=False
    )

    op.add_column("calls", sa.Column("handled_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("calls", sa.Column("handled_by_id", sa.Integer(), nullable=True))
    op.add_column("calls", sa.Column("assignee_id", sa.Integer(), nullable=True))
    op.create_foreign_key(
        "calls_handled_by_id_fkey", "calls", "users", ["handled_by_id"], ["id"], ondelete="SET NULL"
    )
    op.create_foreign_key(
        "calls_assignee_id_fkey", "calls", "users", ["assignee_id"], ["id"], ondelete="SET NULL"
    )
    op.create_index(op.f("ix_calls_assignee_id"), "calls", ["assignee_id"], unique=False)

    op.create_index(
        "ix_recordings_transcript_trgm",
        "recordings",
        ["transcript"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"transcript": "gin_trgm_ops"},
    )


def downgrade() -> None:
    op.drop_index("ix_recordings_transcript_trgm", table_name="recordings")
    op.drop_index(op.f("ix_calls_assignee_id"), table_name="calls")
    op.drop_constraint("calls_assignee_id_fkey", "calls", type_="foreignkey")
    op.drop_constraint("calls_handled_by_id_fkey", "calls", type_="foreignkey")
    op.drop_column("calls", "assignee_id")
    op.drop_column("calls", "handled_by_id")
    op.drop_column("calls", "handled_at")
    op.drop_index("ix_login_attempts_ip_at", table_name="login_attempts")
    op.drop_index("ix_login_attempts_email_at", table_name="login_attempts")
    op.drop_table("login_attempts")
    op.drop_index(op.f("ix_notes_call_id"), table_name="notes")
    op.drop_table("notes")
    op.drop_index(op.f("ix_call_tags_tag_id"), table_name="call_tags")
    op.drop_table("call_tags")
    op.drop_table("tags")
    op.drop_index(op.f("ix_api_tokens_user_id"), table_name="api_tokens")
    op.drop_table("api_tokens")
    op.drop_index(op.f("ix_memberships_business_id"), table_name="memberships")
    op.drop_table("memberships")
    op.drop_table("users")
