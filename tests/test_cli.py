"""User mistakes get one clear line and exit status 1; listings read the registry."""
from __future__ import annotations

import json
import os
import stat

from tests.conftest import han_env, register_copy, run_cli


def test_errors_are_one_clear_line(tiny_model, sqlite_url, tmp_path):
    checkpoints, _, _ = tiny_model
    register_copy(sqlite_url, checkpoints)
    env = han_env(tmp_path, sqlite_url, checkpoints)
    cases = [
        (["submit", str(tmp_path / "missing.jsonl")], "missing.jsonl: no such file"),
        (["submit", str(tmp_path)], "is a directory"),
        (["submit", str(tmp_path / "x.jsonl"), "--model", "v9"], "no v9 in the registry; known versions: v1"),
        (["submit", str(tmp_path / "x.jsonl"), "--model", "latest"], "'latest' is not a model version"),
        (["analyze", "failures", "--since", "v5"], "no versions >= v5; known versions: v1"),
        (["analyze", "failures", "--since", "v1"], "no labelled predictions match (versions >= v1)"),
        (["train", "--preset", "huge"], "unknown preset 'huge'"),
        (["train", "--preset", "tiny", "--set", "colour=red"], "bad override 'colour=red'"),
        (["train", "--preset", "tiny", "--set", "precision=fp16"], "precision=fp16 must be one of fp32, bf16"),
        (["train", "--preset", "tiny", "--set", "embed_lr_scale=1e-7"], "learning rate below min_lr=1e-06"),
        # nan and inf pass every range check unless refused by name
        (["train", "--preset", "tiny", "--set", "lr=inf"], "lr=inf must be a finite number"),
        (["train", "--preset", "tiny", "--set", "embed_lr_scale=nan"], "embed_lr_scale=nan must be a finite number"),
        (["train", "--preset", "tiny", "--set", "min_lr=1"], "min_lr=1.0 must not exceed lr=0.01"),
        (["train", "--preset", "tiny", "--set", "seed=-1"], "seed=-1 must be between 0 and 2**32 - 1"),
        (["train", "--resume", "v1", "--preset", "seed"], "continues a run with its own settings; drop --preset"),
        (["train", "--preset", "tiny", "--checkpoint-dir", str(tmp_path / "x.jsonl")],
         f"Not a directory: {tmp_path / 'x.jsonl'}"),
        (["train", "--preset", "tiny", "--database-url", f"sqlite:///{tmp_path}/no-such-folder/han.db"],
         "no-such-folder"),
        (["status", "no-such-job"], "no job 'no-such-job'"),
    ]
    (tmp_path / "x.jsonl").write_text('{"id": 1, "text": "hello world"}\n')
    for args, message in cases:
        result = run_cli(*args, env=env)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    for name, value, message in [("HAN_WORKER_MAX_TASKS", "many", "expected a whole number >= 0"),
                                 ("HAN_WORKER_MAX_TASKS", "-1", "expected a whole number >= 0"),
                                 ("HAN_VISIBILITY_TIMEOUT", "0", "expected a whole number >= 1")]:
        result = run_cli("models", env={**env, name: value})
        assert result.returncode == 1 and f"{name}={value!r}: {message}" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_models_lists_the_registry(tiny_model, sqlite_url, tmp_path):
    checkpoints, _, train_output = tiny_model
    register_copy(sqlite_url, checkpoints)
    env = han_env(tmp_path, sqlite_url, checkpoints)
    rows = json.loads(run_cli("models", "--format", "json", env=env, check=True).stdout)
    metrics = json.loads((checkpoints / "v1" / "metrics.json").read_text())
    assert [r["version"] for r in rows] == ["v1"]
    assert rows[0]["accuracy"] == metrics["accuracy"] and rows[0]["macro_f1"] == metrics["macro_f1"]
    assert train_output.startswith(f"v1: test accuracy {metrics['accuracy']:.4f}")


def test_tiny_checkpoint_is_complete(tiny_model):
    checkpoints, _, _ = tiny_model
    config = json.loads((checkpoints / "v1" / "config.json").read_text())
    assert config["preset"] == "tiny" and config["data"]["protocol"] == "seed"
    assert len(config["label_names"]) == 20
    assert set(config["failure_thresholds"]) == {"word_over_concentration", "diffuse_sentence_attention",
                                                 "short_document", "high_word_entropy"}
    assert config["text"]["punkt"]["ortho_context"], "Punkt parameters travel in the checkpoint"
    history = json.loads((checkpoints / "v1" / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, len(history) + 1))
    assert not list(checkpoints.glob(".v*")), "no temporary folder left behind"
    # readable as the umask says, like any new file (a worker may run as another user)
    mask = os.umask(0)
    os.umask(mask)
    for path in [checkpoints / "v1", *(checkpoints / "v1").rglob("*")]:
        assert stat.S_IMODE(path.stat().st_mode) == (0o777 if path.is_dir() else 0o666) & ~mask, path
