"""add post_failures (posts a version could not classify) and jobs.source_sha256 (resume a submission)

Revision ID: 0003_failures_digest
Revises: 0002_version_summary
Create Date: 2026-12-03 18:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0003_failures_digest"
down_revision = "0002_version_summary"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "post_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("post_id", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["post_id"], ["posts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["model_version"], ["model_versions.version"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("post_id", "model_version", name="uq_post_failures_post_version"),
    )
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(sa.Column("source_sha256", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_jobs_source_sha256", ["source_sha256"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_index("ix_jobs_source_sha256")
        batch_op.drop_column("source_sha256")
    op.drop_table("post_failures")
