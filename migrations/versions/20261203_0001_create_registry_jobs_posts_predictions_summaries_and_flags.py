"""create registry jobs posts predictions summaries and flags

Revision ID: 71111a6eecf8
Revises: 
Create Date: 2026-12-03 16:38:53.196928
"""
from alembic import op
import sqlalchemy as sa

# One row per prediction, flags and `correct` as 0/1 integers so SUM() and AVG() work the same on
# SQLite and PostgreSQL; `correct` is NULL where the post came without a label.
ATTENTION_STATS = """
CREATE VIEW attention_stats AS
SELECT p.id AS prediction_id,
       po.external_id AS post_id,
       po.job_id AS job_id,
       p.model_version AS version,
       p.predicted_label AS predicted_label,
       po.true_label AS true_label,
       CASE WHEN po.true_label IS NULL THEN NULL
            WHEN po.true_label = p.predicted_label THEN 1 ELSE 0 END AS correct,
       p.confidence AS confidence,
       s.word_entropy, s.word_max, s.word_max_mean, s.sent_entropy, s.sent_max, s.gate_mean,
       s.num_sentences, s.num_words, s.top_words_json AS top_words,
       CASE WHEN f.word_over_concentration THEN 1 ELSE 0 END AS word_over_concentration,
       CASE WHEN f.diffuse_sentence_attention THEN 1 ELSE 0 END AS diffuse_sentence_attention,
       CASE WHEN f.short_document THEN 1 ELSE 0 END AS short_document,
       CASE WHEN f.high_word_entropy THEN 1 ELSE 0 END AS high_word_entropy,
       p.created_at AS created_at
FROM predictions p
JOIN posts po ON po.id = p.post_id
JOIN attention_summaries s ON s.prediction_id = p.id
JOIN failure_flags f ON f.prediction_id = p.id
"""


revision = '71111a6eecf8'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('model_versions',
    sa.Column('version', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('preset', sa.String(length=32), nullable=False),
    sa.Column('protocol', sa.String(length=16), nullable=False),
    sa.Column('accuracy', sa.Float(), nullable=True),
    sa.Column('weighted_f1', sa.Float(), nullable=True),
    sa.Column('macro_f1', sa.Float(), nullable=True),
    sa.Column('train_seconds', sa.Float(), nullable=True),
    sa.Column('metrics_json', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('version')
    )
    op.create_table('jobs',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('model_version', sa.Integer(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('batch_size', sa.Integer(), nullable=False),
    sa.Column('total_posts', sa.Integer(), nullable=False),
    sa.Column('rejected_lines', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['model_version'], ['model_versions.version'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('posts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.String(length=36), nullable=False),
    sa.Column('external_id', sa.String(length=256), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('true_label', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job_id', 'external_id', name='uq_posts_job_external_id')
    )
    with op.batch_alter_table('posts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_posts_job_id'), ['job_id'], unique=False)

    op.create_table('predictions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('post_id', sa.Integer(), nullable=False),
    sa.Column('model_version', sa.Integer(), nullable=False),
    sa.Column('predicted_label', sa.String(length=64), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.Column('top3_json', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['model_version'], ['model_versions.version'], ),
    sa.ForeignKeyConstraint(['post_id'], ['posts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('post_id', 'model_version', name='uq_predictions_post_version')
    )
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_predictions_model_version'), ['model_version'], unique=False)
        batch_op.create_index(batch_op.f('ix_predictions_post_id'), ['post_id'], unique=False)

    op.create_table('attention_summaries',
    sa.Column('prediction_id', sa.Integer(), nullable=False),
    sa.Column('word_entropy', sa.Float(), nullable=False),
    sa.Column('word_max', sa.Float(), nullable=False),
    sa.Column('word_max_mean', sa.Float(), nullable=False),
    sa.Column('sent_entropy', sa.Float(), nullable=False),
    sa.Column('sent_max', sa.Float(), nullable=False),
    sa.Column('gate_mean', sa.Float(), nullable=False),
    sa.Column('num_sentences', sa.Integer(), nullable=False),
    sa.Column('num_words', sa.Integer(), nullable=False),
    sa.Column('top_words_json', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['prediction_id'], ['predictions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('prediction_id')
    )
    op.create_table('failure_flags',
    sa.Column('prediction_id', sa.Integer(), nullable=False),
    sa.Column('word_over_concentration', sa.Boolean(), nullable=False),
    sa.Column('diffuse_sentence_attention', sa.Boolean(), nullable=False),
    sa.Column('short_document', sa.Boolean(), nullable=False),
    sa.Column('high_word_entropy', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['prediction_id'], ['predictions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('prediction_id')
    )
    op.execute(ATTENTION_STATS)


def downgrade() -> None:
    op.execute("DROP VIEW attention_stats")
    op.drop_table('failure_flags')
    op.drop_table('attention_summaries')
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_predictions_post_id'))
        batch_op.drop_index(batch_op.f('ix_predictions_model_version'))

    op.drop_table('predictions')
    with op.batch_alter_table('posts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_posts_job_id'))

    op.drop_table('posts')
    op.drop_table('jobs')
    op.drop_table('model_versions')
