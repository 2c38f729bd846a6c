"""Alembic upgrade and downgrade on real SQLite and PostgreSQL databases."""
from __future__ import annotations

from sqlalchemy import create_engine, inspect

from db.session import downgrade, normalise_url, upgrade

TABLES = {"model_versions", "jobs", "posts", "predictions", "attention_summaries", "failure_flags"}


def test_upgrade_and_downgrade(database_url):
    upgrade(database_url)
    engine = create_engine(normalise_url(database_url))
    inspector = inspect(engine)
    assert TABLES <= set(inspector.get_table_names())
    assert {"attention_stats", "version_summary"} <= set(inspector.get_view_names())
    columns = {c["name"] for c in inspector.get_columns("attention_stats")}
    assert {"post_id", "version", "predicted_label", "true_label", "correct", "word_entropy", "word_max",
            "word_max_mean", "sent_entropy", "sent_max", "gate_mean", "num_sentences", "num_words",
            "top_words", "word_over_concentration", "diffuse_sentence_attention", "short_document",
            "high_word_entropy"} <= columns
    upgrade(database_url)  # at head already: nothing to do
    downgrade(database_url)
    inspector = inspect(engine)
    assert not (TABLES & set(inspector.get_table_names()))
    assert not {"attention_stats", "version_summary"} & set(inspector.get_view_names())
    engine.dispose()
