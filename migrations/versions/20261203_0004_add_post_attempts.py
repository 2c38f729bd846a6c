"""add post_attempts: deliveries of a post that started classifying and have not finished

A row exists while a post is being classified; a worker that dies mid-batch leaves it behind, so
the next delivery knows the batch was interrupted and goes post by post, and a post that keeps
killing its worker is marked failed after a bounded number of attempts.

Revision ID: 0004_post_attempts
Revises: 0003_failures_digest
Create Date: 2026-12-03 20:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0004_post_attempts"
down_revision = "0003_failures_digest"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "post_attempts",
        sa.Column("post_id", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["post_id"], ["posts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["model_version"], ["model_versions.version"]),
        sa.PrimaryKeyConstraint("post_id", "model_version"),
    )


def downgrade() -> None:
    op.drop_table("post_attempts")
