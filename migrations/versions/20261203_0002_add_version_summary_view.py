"""add version_summary view: one row per model version over its stored predictions

Revision ID: 0002_version_summary
Revises: 71111a6eecf8
Create Date: 2026-12-03 17:40:00
"""
from alembic import op

revision = "0002_version_summary"
down_revision = "71111a6eecf8"
branch_labels = None
depends_on = None

# Means as double precision on both SQLite and PostgreSQL (PostgreSQL's AVG of numeric is a decimal).
VERSION_SUMMARY = """
CREATE VIEW version_summary AS
SELECT version,
       COUNT(*) AS predictions,
       COUNT(correct) AS labelled,
       CAST(AVG(correct * 1.0) AS DOUBLE PRECISION) AS accuracy,
       CAST(AVG(word_entropy) AS DOUBLE PRECISION) AS word_entropy,
       CAST(AVG(word_max_mean) AS DOUBLE PRECISION) AS word_max_mean,
       CAST(AVG(sent_entropy) AS DOUBLE PRECISION) AS sent_entropy,
       CAST(AVG(gate_mean) AS DOUBLE PRECISION) AS gate_mean,
       CAST(AVG(num_sentences * 1.0) AS DOUBLE PRECISION) AS num_sentences,
       CAST(AVG(word_over_concentration * 1.0) AS DOUBLE PRECISION) AS word_over_concentration_rate,
       CAST(AVG(diffuse_sentence_attention * 1.0) AS DOUBLE PRECISION) AS diffuse_sentence_attention_rate,
       CAST(AVG(short_document * 1.0) AS DOUBLE PRECISION) AS short_document_rate,
       CAST(AVG(high_word_entropy * 1.0) AS DOUBLE PRECISION) AS high_word_entropy_rate
FROM attention_stats
GROUP BY version
"""


def upgrade() -> None:
    op.execute(VERSION_SUMMARY)


def downgrade() -> None:
    op.execute("DROP VIEW version_summary")
