"""Analyses against a database built from known rows; expected numbers worked out by hand.

Six labelled posts, classified by v1 and again (a second job, same post ids) by v2:

    post  true       v1 predicted  v1 flags             v2 predicted  v2 flags
    p1    sci.med    sci.med  ok   short                sci.med  ok   -
    p2    sci.med    sci.space     short, diffuse       sci.med  ok   -
    p3    sci.space  sci.space ok  -                    sci.med       -
    p4    sci.space  sci.med       high_word_entropy    sci.space ok  -
    p5    rec.autos  rec.autos ok  over_concentration   rec.autos ok  -
    p6    rec.autos  sci.space     short                sci.space     short
"""
from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import text

from db import queries
from db.readonly import run_read_only
from db.session import get_engine, session_scope, upgrade
from tests.conftest import ROOT, han_env, register_copy, run_cli

MED, SPACE, AUTOS = "sci.med", "sci.space", "rec.autos"
TRUE = {"p1": MED, "p2": MED, "p3": SPACE, "p4": SPACE, "p5": AUTOS, "p6": AUTOS}
V1 = {"p1": (MED, ["short_document"]), "p2": (SPACE, ["short_document", "diffuse_sentence_attention"]),
      "p3": (SPACE, []), "p4": (MED, ["high_word_entropy"]), "p5": (AUTOS, ["word_over_concentration"]),
      "p6": (SPACE, ["short_document"])}
V2 = {"p1": (MED, []), "p2": (MED, []), "p3": (MED, []), "p4": (SPACE, []), "p5": (AUTOS, []),
      "p6": (SPACE, ["short_document"])}
WORD_ENTROPY = {"p1": 1.0, "p2": 2.0, "p3": 1.2, "p4": 2.5, "p5": 0.5, "p6": 1.5}
FLAGS = ["word_over_concentration", "diffuse_sentence_attention", "short_document", "high_word_entropy"]


def add_job(session, job_id, version, predictions):
    posts = [{"external_id": p, "line_no": i + 1, "text": f"post {p}", "true_label": TRUE[p]}
             for i, p in enumerate(TRUE)]
    queries.create_job(session, job_id=job_id, model_version=version, source="known.jsonl", batch_size=10,
                       posts=posts, rejected_lines=0)
    ids = {r[0]: r[1] for r in session.execute(text("SELECT external_id, id FROM posts WHERE job_id = :j"), {"j": job_id})}
    rows = []
    for p, (predicted, flags) in predictions.items():
        summary = {"word_entropy": WORD_ENTROPY[p], "word_max": 0.6, "word_max_mean": 0.4, "sent_entropy": 1.0,
                   "sent_max": 0.5, "gate_mean": 0.1 * (list(TRUE).index(p) + 1), "num_sentences": 4,
                   "num_words": 40, "top_words": [["word", 0.5]]}
        rows.append({"post_id": ids[p], "predicted_label": predicted, "confidence": 0.9,
                     "top3": [[predicted, 0.9]], "summary": summary, "flags": {f: f in flags for f in FLAGS}})
    queries.save_predictions(session, version=version, rows=rows)
    queries.mark_job_queued(session, job_id=job_id)


def build_known(url):
    upgrade(url)
    with session_scope(url) as session:
        for version in (1, 2, 10):
            queries.register_version(session, version=version, path=f"/nowhere/v{version}", sha256="0" * 64,
                                     preset="tiny", protocol="seed", metrics={}, train_seconds=0)
        add_job(session, "job-v1", 1, V1)
        add_job(session, "job-v2", 2, V2)
        add_job(session, "job-v10", 10, {"p1": (MED, [])})


@pytest.fixture
def known(database_url, tmp_path):
    build_known(database_url)
    return database_url, han_env(tmp_path, database_url, tmp_path / "checkpoints")


def cli_json(env, *args):
    result = run_cli(*args, "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def by(rows, key):
    return {r[key]: r for r in rows}


def test_failures_by_hand(known):
    _, env = known
    report = cli_json(env, "analyze", "failures", "--model", "v1", "--by-group")
    assert (report["incorrect"], report["correct"]) == (3, 3)
    assert "failure_modes_by_group" not in cli_json(env, "analyze", "failures", "--model", "v1")
    modes = by(report["failure_modes"], "failure_mode")
    short = modes["short_document"]
    assert (short["incorrect_count"], short["correct_count"]) == (2, 1)
    assert short["incorrect_share"] == pytest.approx(2 / 3) and short["correct_share"] == pytest.approx(1 / 3)
    assert short["error_rate_flagged"] == pytest.approx(2 / 3) and short["error_rate_unflagged"] == pytest.approx(1 / 3)
    assert short["lift"] == pytest.approx(2.0)
    over = modes["word_over_concentration"]
    assert (over["incorrect_count"], over["correct_count"], over["error_rate_flagged"], over["lift"]) == (0, 1, 0.0, 0.0)
    assert over["error_rate_unflagged"] == pytest.approx(0.6)
    assert modes["diffuse_sentence_attention"]["lift"] == pytest.approx(2.5)
    groups = {(r["group"], r["failure_mode"]): r for r in report["failure_modes_by_group"]}
    autos_short = groups[(AUTOS, "short_document")]
    assert (autos_short["flagged"], autos_short["error_rate_flagged"], autos_short["error_rate_unflagged"]) == (1, 1.0, 0.0)
    entropy = by(report["attention"], "statistic")["word_entropy"]
    assert entropy["correct_mean"] == pytest.approx(0.9) and entropy["incorrect_mean"] == pytest.approx(2.0)
    assert entropy["incorrect_std"] == pytest.approx(0.5)


def test_version_selection_is_numeric_and_errors_list_known_versions(known):
    _, env = known
    assert cli_json(env, "analyze", "failures", "--since", "v2")["correct"] == 5  # v2: 4 right, v10: 1 right
    assert cli_json(env, "analyze", "failures", "--since", "v9")["correct"] == 1  # v10 comes after v9
    both = cli_json(env, "analyze", "failures", "--until", "v2")
    assert (both["correct"], both["incorrect"]) == (7, 5)
    one_group = cli_json(env, "analyze", "failures", "--model", "v1", "--label", MED)
    assert (one_group["correct"], one_group["incorrect"]) == (1, 1)
    for args, message in [(["--model", "v3"], "no v3 in the registry; known versions: v1, v2, v10"),
                          (["--since", "version2"], "'version2' is not a model version"),
                          (["--job", "nope"], "no labelled predictions match (job nope)")]:
        result = run_cli("analyze", "failures", *args, env=env)
        assert result.returncode == 1 and message in result.stderr, result.stderr


def test_errors_by_hand(known):
    _, env = known
    report = cli_json(env, "analyze", "errors", "--model", "v1")
    assert report["accuracy"] == pytest.approx(0.5)
    assert report["macro_f1"] == pytest.approx((0.5 + 0.4 + 2 / 3) / 3)
    assert [(r["group"], round(r["f1"], 4), r["support"]) for r in report["per_group"]] == [
        (SPACE, 0.4, 2), (MED, 0.5, 2), (AUTOS, 0.6667, 2)]
    space = by(report["per_group"], "group")[SPACE]
    assert space["precision"] == pytest.approx(1 / 3) and space["recall"] == pytest.approx(0.5)
    assert [(r["true"], r["predicted"], r["count"], r["share_of_true"]) for r in report["confused_pairs"]] == [
        (AUTOS, SPACE, 1, 0.5), (MED, SPACE, 1, 0.5), (SPACE, MED, 1, 0.5)]
    matrix = by(report["confusion_matrix"], "true")
    assert matrix[AUTOS] == {"true": AUTOS, AUTOS: 1, MED: 0, SPACE: 1}


def test_attention_and_gate(known, tmp_path):
    _, env = known
    report = cli_json(env, "analyze", "attention", "--model", "v1", "--plot", str(tmp_path / "a.png"))
    assert report["cross_path_weight_mean"] == pytest.approx(0.35)  # gate 0.1 .. 0.6
    rows = {(r["statistic"], r["outcome"]): r for r in report["distribution"]}
    assert rows[("word_entropy", "incorrect")]["median"] == pytest.approx(2.0)
    assert rows[("word_entropy", "correct")]["max"] == pytest.approx(1.2)
    assert (tmp_path / "a.png").stat().st_size > 10_000


def test_compare_by_hand(known, tmp_path):
    _, env = known
    report = cli_json(env, "analyze", "compare", "v1", "v2", "--plot", str(tmp_path / "c.png"))
    assert report["posts_in_common"] == 6
    metrics = by(report["metrics"], "metric")
    assert metrics["accuracy"]["v1"] == pytest.approx(0.5) and metrics["accuracy"]["v2"] == pytest.approx(4 / 6)
    assert metrics["accuracy"]["delta"] == pytest.approx(1 / 6)
    assert [r["post_id"] for r in report["right_to_wrong"]] == ["p3"]
    assert sorted(r["post_id"] for r in report["wrong_to_right"]) == ["p2", "p4"]
    shifts = by(report["failure_shifts"], "failure_mode")
    assert shifts["short_document"]["delta"] == pytest.approx(1 / 6 - 3 / 6)
    assert (tmp_path / "c.png").exists()
    same = run_cli("analyze", "compare", "v2", "v2", env=env)
    assert same.returncode == 1 and "two different versions" in same.stderr


def test_table_and_csv_formats(known):
    _, env = known
    table = run_cli("analyze", "errors", "--model", "v1", env=env)
    assert table.returncode == 0 and "sci.space" in table.stdout and "confused pairs" in table.stdout
    csv = run_cli("analyze", "errors", "--model", "v1", "--format", "csv", env=env).stdout
    assert "# per_group\ngroup,precision,recall,f1,support\nsci.space," in csv


def test_report_files(known, tmp_path):
    from PIL import Image

    _, env = known
    out = tmp_path / "report"
    result = run_cli("report", "--model", "v1", str(out), env=env)
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["confusion_matrix.png", "per_class_metrics.csv", "per_class_f1.png",
                            "confusion_analysis.csv", "attention_statistics.csv", "attention_statistics.png",
                            "failure_analysis.csv", "failure_modes.png", "failure_mode_report.txt"])
    for png in out.glob("*.png"):
        with Image.open(png) as image:
            assert image.width >= 600 and image.height >= 400
    assert len((out / "failure_analysis.csv").read_text().splitlines()) == 1 + 3
    assert "short_document" in (out / "failure_mode_report.txt").read_text()
    assert "- lift 2.00: predicts errors" in (out / "failure_mode_report.txt").read_text()


def test_sql_is_read_only_and_parameterised(known):
    url, env = known
    rows = cli_json(env, "sql", "SELECT COUNT(*) AS n FROM attention_stats WHERE version = :v AND correct = :c",
                    "-p", "v", "1", "-p", "c", "1")
    assert rows == [{"n": 3}]
    for statement in ["DELETE FROM posts", "UPDATE jobs SET status = 'x'", "DROP VIEW attention_stats"]:
        result = run_cli("sql", statement, env=env)
        assert result.returncode == 1 and "query refused" in result.stderr, (statement, result.stderr)
    with get_engine(url).connect() as c:
        assert c.execute(text("SELECT COUNT(*) FROM posts")).scalar() == 18


def test_readme_sql_examples_run_unchanged(known):
    url, _ = known
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sql\n(.*?)```", readme, re.S)
    statements = [s.strip() for block in blocks for s in block.split(";") if s.strip()
                  and not all(line.startswith("--") for line in s.strip().splitlines())]
    assert len(statements) >= 4
    for statement in statements:
        columns, rows = run_read_only(url, statement, {})
        assert columns, statement


def test_views_summarise_versions(known):
    url, _ = known
    columns, rows = run_read_only(url, "SELECT version, predictions, labelled, accuracy, short_document_rate "
                                       "FROM version_summary ORDER BY version", {})
    assert [(r[0], r[1], r[2]) for r in rows] == [(1, 6, 6), (2, 6, 6), (10, 1, 1)]
    assert rows[0][3] == pytest.approx(0.5) and rows[1][4] == pytest.approx(1 / 6)


def test_explain_recomputes_with_the_checkpoint(tiny_model, sqlite_url, tmp_path):
    checkpoints, _, _ = tiny_model
    register_copy(sqlite_url, checkpoints)
    with session_scope(sqlite_url) as session:
        queries.create_job(session, job_id="explain-job", model_version=1, source="x", batch_size=1, rejected_lines=0,
                           posts=[{"external_id": "q1", "line_no": 1, "true_label": "sci.space",
                                   "text": "The shuttle launch was delayed. NASA said the orbit is fine. Thanks."}])
    env = han_env(tmp_path, sqlite_url, checkpoints)
    result = run_cli("explain", "q1", "--model", "v1", "--format", "json", "--html", str(tmp_path / "q1.html"), env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [[w for w, _ in s["words"]] for s in data["sentences"]] == [
        ["the", "shuttle", "launch", "was", "delayed"], ["nasa", "said", "the", "orbit", "is", "fine"], ["thanks"]]
    assert sum(s["weight"] for s in data["sentences"]) == pytest.approx(1.0, abs=1e-5)
    for s in data["sentences"]:
        assert sum(w for _, w in s["words"]) == pytest.approx(1.0, abs=1e-5)
    assert len(data["top3"]) == 3 and data["predicted"] == data["top3"][0][0]
    assert data["flags"]["short_document"] is False and data["true_label"] == "sci.space"
    page = (tmp_path / "q1.html").read_text()
    assert page.count("<span title=") == 12 and "shuttle" in page
    terminal = run_cli("explain", "q1", "--model", "v1", env=env)
    assert terminal.returncode == 0 and "top 3:" in terminal.stdout and "shuttle" in terminal.stdout
    missing = run_cli("explain", "nope", env=env)
    assert missing.returncode == 1 and "no post 'nope'" in missing.stderr
