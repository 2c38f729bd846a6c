"""Alembic upgrade and downgrade on real SQLite and PostgreSQL databases."""
from __future__ import annotations

import subprocess

from sqlalchemy import create_engine, inspect, text

from db.session import downgrade, normalise_url, upgrade
from tests.conftest import PYTHON, ROOT

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


def test_processes_migrating_a_new_database_at_once(database_url):
    """A trainer, a worker and a submit started together on an empty database all run upgrade."""
    code = "import sys; from db.session import upgrade; upgrade(sys.argv[1])"
    runs = [subprocess.Popen([PYTHON, "-c", code, database_url], cwd=ROOT, stderr=subprocess.PIPE, text=True)
            for _ in range(4)]
    errors = [run.communicate(timeout=120)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0, 0], errors
    engine = create_engine(normalise_url(database_url))
    assert TABLES <= set(inspect(engine).get_table_names())
    with engine.connect() as c:
        assert c.execute(text("SELECT COUNT(*) FROM alembic_version")).scalar() == 1
    engine.dispose()
