"""The whole path on real parts: tiny model trained on the real corpus, a real Celery worker
process, a real Redis, submit through the CLI, results in SQLite and PostgreSQL."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import han_env, register_copy, run_cli
from trainer.data import load_corpus
from trainer.presets import preset
from trainer.train import limit_corpus

FLAGS = ["word_over_concentration", "diffuse_sentence_attention", "short_document", "high_word_entropy"]


def tiny_test_slice_ids(corpus_path) -> set[str]:
    """The test posts the tiny preset scored itself on."""
    return set(limit_corpus(load_corpus(corpus_path), preset("tiny")).test.ids)


def export_posts(env, path, keep_ids):
    result = run_cli("export-posts", "--split", "test", env=env, check=True)
    lines = [line for line in result.stdout.splitlines() if json.loads(line)["id"] in keep_ids]
    path.write_text("\n".join(lines) + "\n")
    return lines


def test_submit_200_real_posts_through_redis_and_celery(tiny_model, corpus_path, database_url, redis_url,
                                                         start_worker, tmp_path):
    checkpoints, _, _ = tiny_model
    register_copy(database_url, checkpoints)
    env = han_env(tmp_path, database_url, checkpoints, broker_url=redis_url)
    posts = tmp_path / "posts.jsonl"
    lines = export_posts(env, posts, tiny_test_slice_ids(corpus_path))
    assert len(lines) == 200
    start_worker(env)

    result = run_cli("submit", str(posts), "--wait", "--batch-size", "32", env=env)
    assert result.returncode == 0, result.stderr
    assert "200 posts accepted, 0 lines rejected, 7 batches queued for v1" in result.stdout
    assert "classified: 200" in result.stdout

    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM predictions WHERE model_version = 1")).scalar() == 200
        assert c.execute(text("SELECT count(*) FROM attention_summaries")).scalar() == 200
        assert c.execute(text("SELECT count(*) FROM failure_flags")).scalar() == 200
        rows = c.execute(text("SELECT * FROM attention_stats")).mappings().all()
        assert c.execute(text("SELECT status FROM jobs")).scalar() == "done"
    engine.dispose()
    assert len(rows) == 200 and {r["version"] for r in rows} == {1}
    for r in rows:
        assert r["num_sentences"] >= 1 and r["num_words"] >= r["num_sentences"]
        assert 0 < r["word_max"] <= 1 and 0 < r["sent_max"] <= 1 and 0 < r["gate_mean"] < 1
        assert r["word_max_mean"] <= r["word_max"] + 1e-9
        assert r["short_document"] == int(r["num_sentences"] < 3)
        assert r["word_over_concentration"] == int(r["word_max_mean"] > 0.5)
        assert len(json.loads(r["top_words"])) >= 1
    # serving tokenises and batches as training did: the database's accuracy is the trainer's
    trained = json.loads((checkpoints / "v1" / "metrics.json").read_text())
    db_accuracy = sum(r["correct"] for r in rows) / len(rows)
    assert db_accuracy == pytest.approx(trained["accuracy"], abs=1e-12)
    assert f"accuracy: {db_accuracy:.4f}" in result.stdout

    # analyze failures agrees with counts taken from the view itself
    report = json.loads(run_cli("analyze", "failures", "--since", "v1", "--format", "json", env=env,
                                check=True).stdout)
    incorrect = [r for r in rows if r["correct"] == 0]
    correct = [r for r in rows if r["correct"] == 1]
    assert (report["incorrect"], report["correct"]) == (len(incorrect), len(correct))
    for mode in report["failure_modes"]:
        flag = mode["failure_mode"]
        assert mode["incorrect_count"] == sum(r[flag] for r in incorrect)
        assert mode["correct_count"] == sum(r[flag] for r in correct)
        if incorrect:
            assert mode["incorrect_share"] == pytest.approx(mode["incorrect_count"] / len(incorrect))
    assert [m["failure_mode"] for m in report["failure_modes"]] == FLAGS
    entropy = next(s for s in report["attention"] if s["statistic"] == "word_entropy")
    if incorrect:
        assert entropy["incorrect_mean"] == pytest.approx(sum(r["word_entropy"] for r in incorrect) / len(incorrect))


def test_bad_lines_are_reported_and_good_posts_classified(tiny_model, sqlite_url, redis_url, start_worker,
                                                          tmp_path):
    checkpoints, _, _ = tiny_model
    register_copy(sqlite_url, checkpoints)
    env = han_env(tmp_path, sqlite_url, checkpoints, broker_url=redis_url)
    exported = run_cli("export-posts", "--split", "test", "--limit", "10", env=env, check=True).stdout.splitlines()
    good = [line.encode() for line in exported]
    bad = [
        b'{"id": "broken", "text": ',                        # 11 malformed JSON
        b'["not", "an", "object"]',                          # 12
        b'{"id": "no-text"}',                                # 13
        b'{"id": "empty", "text": "   "}',                   # 14
        b'{"id": "number", "text": 42}',                     # 15
        json.dumps({"id": json.loads(exported[0])["id"], "text": "again"}).encode(),  # 16 duplicate id
        b'{"id": "label", "text": "a post", "label": "rec.gardening"}',  # 17
        b'{"id": "latin1", "text": "caf\xe9"}',              # 18 not UTF-8
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(good + bad) + b"\n")
    start_worker(env)

    result = run_cli("submit", str(path), "--wait", "--rejects", str(tmp_path / "rejects.jsonl"), env=env)
    assert result.returncode == 2, result.stderr
    expected = {
        11: "malformed JSON", 12: "not a JSON object (got list)", 13: "missing field 'text'",
        14: "field 'text' is empty", 15: "field 'text' must be a string, not int",
        16: "duplicate id", 17: "unknown label 'rec.gardening'", 18: "not valid UTF-8",
    }
    for line, reason in expected.items():
        assert f"{path}:{line}: rejected: {reason}" in result.stderr, result.stderr
    assert result.stderr.count("rejected:") == 8
    assert "10 posts accepted, 8 lines rejected" in result.stdout
    assert "classified: 10" in result.stdout
    rejects = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejects] == list(range(11, 19))
    engine = create_engine(sqlite_url)
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM attention_stats")).scalar() == 10
        assert c.execute(text("SELECT rejected_lines FROM jobs")).scalar() == 8
    engine.dispose()
