"""The trainer: reproducible, resumable after Ctrl-C, any word vectors, baselines and a report."""
from __future__ import annotations

import json
import signal
import subprocess

import numpy as np
import pytest
from PIL import Image

from tests.conftest import PYTHON, ROOT, han_env, run_cli

# word_dropout draws random numbers every step: reproducibility and resume must cover it too
SLICE = ["--set", "train_limit=1200", "--set", "test_limit=100", "--set", "epochs=3", "--set", "word_dropout=0.1"]
REPORT_FILES = ["class_distribution.csv", "class_distribution.png", "training_history.csv", "training_history.png",
                "model_comparison.csv", "model_comparison.png", "per_class_metrics.csv", "per_class_f1.png",
                "confusion_matrix.png", "experiment_summary.json"]


def metrics_of(checkpoints, version):
    return json.loads((checkpoints / f"v{version}" / "metrics.json").read_text())


def history_of(checkpoints, version):
    return json.loads((checkpoints / f"v{version}" / "history.json").read_text())


def losses(history):
    return [(h["epoch"], h["train_loss"], h["val_loss"], h["val_f1"]) for h in history]


def test_same_seed_same_metrics_and_resume_after_ctrl_c(tmp_path, sqlite_url):
    checkpoints = tmp_path / "checkpoints"
    env = han_env(tmp_path, sqlite_url, checkpoints)
    run_cli("train", "--preset", "tiny", *SLICE, env=env, check=True)
    run_cli("train", "--preset", "tiny", *SLICE, env=env, check=True)
    first, second = metrics_of(checkpoints, 1), metrics_of(checkpoints, 2)
    assert losses(history_of(checkpoints, 1)) == losses(history_of(checkpoints, 2))
    for key in ("accuracy", "weighted_f1", "macro_f1", "best_val_f1"):
        assert first[key] == second[key], key

    # Ctrl-C after the first epoch: v3 holds the best epoch so far, and the run can go on
    # SIGINT as a terminal would send it (a runner started in the background may have it ignored)
    process = subprocess.Popen([PYTHON, "-m", "cli", "train", "--preset", "tiny", *SLICE], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in process.stderr:
        if line.startswith("epoch 1:"):
            process.send_signal(signal.SIGINT)
            break
    out, err = process.communicate(timeout=300)
    assert process.returncode == 130, err
    assert "continue with --resume v3" in err
    interrupted = metrics_of(checkpoints, 3)
    assert interrupted["interrupted"] is True and 1 <= interrupted["epochs_trained"] < 3
    assert (checkpoints / "v3.partial" / "run_state.safetensors").is_file()

    resumed = run_cli("train", "--resume", "v3", env=env, check=True)
    assert "resuming v3 after epoch" in resumed.stderr
    assert resumed.stdout.startswith("v4: ")
    assert not (checkpoints / "v3.partial").exists()
    # the resumed run is the uninterrupted run, epoch for epoch
    assert losses(history_of(checkpoints, 4)) == losses(history_of(checkpoints, 1))
    assert metrics_of(checkpoints, 4)["accuracy"] == first["accuracy"]
    again = run_cli("train", "--resume", "v4", env=env)
    assert again.returncode == 1 and "v4 has no saved training state" in again.stderr


def write_vectors(path, words, dim, header):
    rng = np.random.default_rng(0)
    lines = [f"{len(words)} {dim}"] if header else []
    lines += [w + " " + " ".join(f"{x:.4f}" for x in rng.normal(size=dim)) for w in words]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("kind", ["glove", "word2vec", "word2vec-binary"])
def test_any_word_vectors_file(tmp_path, sqlite_url, kind):
    from gensim.models import KeyedVectors

    words = ["the", "god", "space", "car", "windows", "game", "team", "people", "government", "israel"]
    path = tmp_path / "vectors.txt"
    write_vectors(path, words, 8, header=kind != "glove")
    if kind == "word2vec-binary":
        binary = tmp_path / "vectors.bin"
        KeyedVectors.load_word2vec_format(str(path)).save_word2vec_format(str(binary), binary=True)
        path = binary
    checkpoints = tmp_path / "checkpoints"
    env = han_env(tmp_path, sqlite_url, checkpoints)
    frozen = ["--set", "embed_lr_scale=0"] if kind == "glove" else []  # the vectors as given, not fine-tuned
    bf16 = ["--set", "precision=bf16"] if kind == "word2vec" else []  # the trainer's autocast path, end to end
    faster = ["--set", "embed_lr_scale=2"] if kind == "word2vec-binary" else []
    result = run_cli("train", "--preset", "tiny", "--set", "train_limit=300", "--set", "test_limit=50",
                     "--set", "epochs=1", *frozen, *bf16, *faster, "--embeddings", str(path), env=env, check=True)
    assert f"embed_dim set to 8 to match {path}" in result.stderr
    config = json.loads((checkpoints / "v1" / "config.json").read_text())
    assert config["model"]["embed_dim"] == 8
    assert config["training"]["precision"] == ("bf16" if bf16 else "fp32")
    history = history_of(checkpoints, 1)
    assert all(h["train_seconds"] > 0 and h["val_seconds"] >= 0 for h in history)
    # the word vectors' own learning rate is recorded (and plotted) when it differs from the model's
    expected = {"glove": 0.0, "word2vec": None}.get(kind, 2 * history[0]["lr"])
    assert [h["embed_lr"] for h in history] == [expected]
    coverage = metrics_of(checkpoints, 1)["embedding_coverage"]
    vocab = json.loads((checkpoints / "v1" / "vocab.json").read_text())
    assert coverage == pytest.approx(sum(w in words for w in vocab) / (len(vocab) - 2))
    assert f"coverage {coverage:.1%}" in result.stderr
    from safetensors.numpy import load_file

    from han.checkpoint import WEIGHTS

    table = load_file(str(checkpoints / "v1" / WEIGHTS))["embedding.weight"]
    given = KeyedVectors.load_word2vec_format(str(path), binary=kind == "word2vec-binary", no_header=kind == "glove")
    found = [(vocab.index(w), given[w]) for w in words if w in vocab]
    assert found
    same = [np.allclose(table[row], vector, rtol=0, atol=1e-6) for row, vector in found]
    assert all(same) if frozen else not any(same)  # trained vectors move; frozen ones stay


def test_bad_embeddings_are_refused(tmp_path, sqlite_url):
    env = han_env(tmp_path, sqlite_url, tmp_path / "checkpoints")
    (tmp_path / "junk.txt").write_text("this is not\na vector file at all\n")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "words.txt").write_text("the\nspace\n")
    (tmp_path / "nan.txt").write_text("the 0.1 0.2 0.3\nspace nan 0.2 0.3\ncar 0.1 inf 0.3\n")
    for value, message in [(str(tmp_path / "missing.txt"), "no such word-vector file"),
                           (str(tmp_path / "junk.txt"), "not a GloVe or word2vec file"),
                           (str(tmp_path / "empty.txt"), "not a GloVe or word2vec file (it is empty)"),
                           (str(tmp_path / "words.txt"), "its lines hold words but no numbers"),
                           (str(tmp_path / "nan.txt"), "the vector of 'space' holds nan or inf (2 such words)")]:
        result = run_cli("train", "--preset", "tiny", "--set", "train_limit=100", "--embeddings", value, env=env)
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert not list((tmp_path / "checkpoints").glob("v*")), "a failed run must free its version number"


def test_runs_started_together_get_their_own_versions(tmp_path, sqlite_url):
    """Two trainers started at the same moment into one checkpoint folder and one registry."""
    checkpoints = tmp_path / "checkpoints"
    env = han_env(tmp_path, sqlite_url, checkpoints)
    command = [PYTHON, "-m", "cli", "train", "--preset", "tiny", "--set", "train_limit=300", "--set", "test_limit=40",
               "--set", "epochs=1"]
    runs = [subprocess.Popen([*command, "--set", f"seed={seed}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert sorted(p.name for p in checkpoints.iterdir()) == ["v1", "v2"]
    seeds = {json.loads((checkpoints / v / "config.json").read_text())["training"]["seed"] for v in ("v1", "v2")}
    assert seeds == {1, 2}
    listed = run_cli("models", env=env, check=True).stdout
    assert "v1" in listed and "v2" in listed


def test_baselines_and_report_are_stored_with_the_version(tiny_model):
    checkpoints, _, train_output = tiny_model
    metrics = metrics_of(checkpoints, 1)
    assert set(metrics["baselines"]) == {"logistic_regression", "naive_bayes", "linear_svm"}
    for baseline in metrics["baselines"].values():
        assert 0.05 < baseline["accuracy"] <= 1 and 0 < baseline["macro_f1"] <= 1
    best = max(metrics["baselines"].values(), key=lambda b: b["accuracy"])
    assert f"best baseline: {best['name']} accuracy {best['accuracy']:.4f}" in train_output
    report = checkpoints / "v1" / "report"
    assert sorted(p.name for p in report.iterdir()) == sorted(REPORT_FILES)
    for png in report.glob("*.png"):
        with Image.open(png) as image:
            assert image.width > 500 and image.height > 400
    summary = json.loads((report / "experiment_summary.json").read_text())
    assert summary["test_accuracy"] == metrics["accuracy"] and summary["preset"] == "tiny"
    comparison = (report / "model_comparison.csv").read_text().splitlines()
    assert comparison[0].startswith("model,accuracy") and len(comparison) == 5


def test_a_run_saved_with_the_unfused_optimizer_resumes_fused():
    """Run states saved before AdamW was fused hold `fused: None` in their groups; resuming keeps the
    trainer's fused optimizer and takes the same step as one that was fused all along."""
    import copy

    import torch

    from han.model import HAN, HANConfig
    from trainer.presets import preset
    from trainer.train import load_optimizer_state, make_optimizer, parameter_groups

    config = preset("tiny", ["embed_lr_scale=3"])
    torch.manual_seed(0)
    model = HAN(HANConfig(vocab_size=50, embed_dim=8, word_hidden=8, sent_hidden=8, attention_dim=8,
                          num_layers=1, num_heads=2, top_k=3)).eval()  # no dropout: steps comparable
    words, sent_lengths, doc_lengths = torch.randint(2, 50, (5, 7)), torch.tensor([7, 3, 5, 1, 2]), torch.tensor([3, 2])

    def step(optimizer):
        optimizer.zero_grad()
        model(words, sent_lengths, doc_lengths).logits.sum().backward()
        optimizer.step()

    old = torch.optim.AdamW(parameter_groups(model, config), lr=config.lr)  # torch's default on a CPU
    step(old)
    saved = old.state_dict()
    assert all(group["fused"] is None for group in saved["param_groups"])
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    resumed, fused = make_optimizer(model, config), make_optimizer(model, config)
    load_optimizer_state(resumed, copy.deepcopy(saved))  # (loading may share the saved moments' storage)
    fused.load_state_dict(copy.deepcopy(saved))  # the plain load, to compare with: it comes back unfused
    assert [g["fused"] for g in resumed.param_groups] == [True, True]
    assert [g["fused"] for g in fused.param_groups] == [None, None]
    step(resumed)
    after = {name: p.detach().clone() for name, p in model.named_parameters()}
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(start[name])
    step(fused)  # the unfused path from the same state: the same update up to rounding
    assert all(not torch.equal(after[name], start[name]) for name in start)
    for name, p in model.named_parameters():
        assert torch.allclose(after[name], p, atol=1e-6), name


def test_runs_that_cannot_start_or_go_on_say_why_and_where(tmp_path, sqlite_url):
    import gzip
    import io
    import tarfile

    checkpoints = tmp_path / "checkpoints"
    env = han_env(tmp_path, sqlite_url, checkpoints)
    archive = io.BytesIO()  # an archive cut short in transfer: its gzip stream ends early
    with tarfile.open(fileobj=archive, mode="w") as tar:
        member = tarfile.TarInfo("20news-bydate-train/sci.space/1")
        member.size = 200_000
        tar.addfile(member, io.BytesIO(np.random.default_rng(0).bytes(200_000)))  # incompressible
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(gzip.compress(archive.getvalue())[:100_000])
    small = ["--set", "train_limit=300", "--set", "test_limit=50", "--set", "epochs=1"]
    for args, message in [
        (["--data", str(truncated)], f"{truncated}: not a readable tar archive (Compressed file ended"),
        (["--set", "train_limit=1"], "validation_share=0.1 of 1 training posts leaves no training posts"),
        # a finite but absurd rate: the weights overflow and the loss stops being a number
        ([*small, "--set", "lr=1e30"], "epoch 1: the training loss became nan"),
    ]:
        result = run_cli("train", "--preset", "tiny", *args, env=env)
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()[-1]) < 300
        assert not list(checkpoints.glob("v*")), "nothing registered, the version number is free again"

    # SIGTERM (kill, docker stop) once the last epoch is saved, while the run scores and writes:
    # the message names the version and --resume finishes it
    process = subprocess.Popen([PYTHON, "-m", "cli", "train", "--preset", "tiny", *small], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if line.startswith("epoch 1:"):
            process.send_signal(signal.SIGTERM)
            break
    _, err = process.communicate(timeout=300)
    assert process.returncode == 1 and "interrupted before v1 was written" in err and "--resume v1" in err, err
    assert not (checkpoints / "v1").exists() and (checkpoints / "v1.partial" / "run_state.safetensors").is_file()
    resumed = run_cli("train", "--resume", "v1", env=env, check=True)
    assert resumed.stdout.startswith("v1: ") and not (checkpoints / "v1.partial").exists()
    assert metrics_of(checkpoints, 1)["epochs_trained"] == 1
