"""Train the HAN on 20 Newsgroups and write checkpoint vN with its metrics into the registry.

The loop follows the reference (section 8): AdamW, class-weighted cross-entropy with label
smoothing, cosine annealing, gradient clipping, early stopping on validation weighted F1. Raw
posts go through the same text pipeline the worker runs, and the test split is scored through
han.inference, so the numbers reported here are the numbers the database will hold.

After every epoch the run's state is saved in `checkpoints/vN.partial/`: Ctrl-C writes `vN` from
the best epoch so far, and `--resume vN` continues the run from its last finished epoch.

    result = run_training(settings, preset("small"))
    result.version, result.metrics["accuracy"]
"""
from __future__ import annotations

import copy
import math
import random
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from sklearn.utils.class_weight import compute_class_weight

from db import queries
from db.session import session_scope, upgrade
from han.batching import length_buckets, make_batch
from han.checkpoint import WEIGHTS, LoadedModel, existing_versions, file_sha256, save_checkpoint
from han.inference import classify_tokenized
from han.model import HAN, HANConfig
from han.settings import Settings, resolve_device
from han.text import UNK, TextPipeline, Vocabulary, encode_documents
from trainer.baselines import best_baseline, run_baselines
from trainer.data import Corpus, load_corpus, train_validation_split
from trainer.embeddings import embedding_matrix, load_vectors
from trainer.metrics import scores
from trainer.presets import TrainConfig
from trainer.report import write_training_report
from trainer.run_state import FILE as RUN_STATE_FILE, load_run_state, partial_dir, save_run_state

# Flag thresholds that do not depend on the data (DESIGN.md); the two medians come from validation.
FIXED_THRESHOLDS = {"word_over_concentration": 0.5, "short_document": 3}
RESERVED = ".reserved"  # in vN.partial/: the run that created it owns the number


@dataclass
class TrainResult:
    version: int
    path: Path
    metrics: dict
    train_seconds: float
    interrupted: bool


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def limit_corpus(corpus: Corpus, config: TrainConfig) -> Corpus:
    """The tiny preset's slices: a seeded random sample of each split."""
    rng = np.random.default_rng(config.seed)
    train, test = corpus.train, corpus.test
    if config.train_limit:
        train = train.subset(np.sort(rng.permutation(len(train))[: config.train_limit]))
    if config.test_limit:
        test = test.subset(np.sort(rng.permutation(len(test))[: config.test_limit]))
    return Corpus(train, test, corpus.protocol, corpus.label_names)


def model_config(config: TrainConfig, vocab_size: int, num_classes: int) -> HANConfig:
    return HANConfig(vocab_size=vocab_size, embed_dim=config.embed_dim, word_hidden=config.word_hidden,
                     sent_hidden=config.sent_hidden, attention_dim=config.attention_dim,
                     num_layers=config.num_layers, num_heads=config.num_heads, top_k=config.top_k,
                     dropout=config.dropout, num_classes=num_classes)


def parameter_groups(model: HAN, config: TrainConfig) -> list[dict]:
    """AdamW groups: the word vectors at lr * embed_lr_scale (frozen at 0), everything else at lr.
    At scale 1 one group of all parameters in model order, as before the option existed, so the
    training state of such a run resumes unchanged."""
    if config.embed_lr_scale == 1:
        return [{"params": list(model.parameters())}]
    vectors = model.embedding.weight
    rest = [p for p in model.parameters() if p is not vectors]
    if config.embed_lr_scale == 0:
        vectors.requires_grad_(False)
        return [{"params": rest}]
    return [{"params": rest}, {"params": [vectors], "lr": config.lr * config.embed_lr_scale}]


class TrainingError(ValueError):
    """A run that cannot go on (its loss is no longer a number)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C after an epoch was saved but before the version was written: --resume finishes it."""

    def __init__(self, version: int):
        super().__init__(version)
        self.version = version


def make_criterion(labels: np.ndarray, num_classes: int, config: TrainConfig, device="cpu") -> nn.CrossEntropyLoss:
    """The reference's loss: cross-entropy with balanced class weights (from `labels`, the training
    labels; a class absent from them weighs 1) and the preset's label smoothing."""
    present = np.unique(labels)
    weights = np.ones(num_classes, dtype=np.float32)
    weights[present] = compute_class_weight("balanced", classes=present, y=labels)
    return nn.CrossEntropyLoss(weight=torch.from_numpy(weights).to(device), label_smoothing=config.label_smoothing)


def make_optimizer(model: HAN, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over `parameter_groups`, fused (a fused kernel per parameter instead of torch's default
    on a CPU, the single-tensor loop: 4.9 ms a step instead of 12.0 for the seed dimensions with a
    30,302-word vocabulary, 9.3M parameters, on 2 CPU cores)."""
    return torch.optim.AdamW(parameter_groups(model, config), lr=config.lr, weight_decay=config.weight_decay,
                             fused=True)


def load_optimizer_state(optimizer: torch.optim.AdamW, saved: dict) -> None:
    """`optimizer.load_state_dict(saved)`, kept fused: load_state_dict takes every group option from
    the saved state, so a run saved before the optimizer was fused would otherwise resume (and keep
    saving itself) unfused. Fused AdamW wants its step counts as float32 on the parameters' device."""
    optimizer.load_state_dict(saved)
    for group in optimizer.param_groups:
        group["fused"], group["foreach"] = True, None
        for parameter in group["params"]:
            state = optimizer.state.get(parameter, {})
            if "step" in state:
                state["step"] = state["step"].to(parameter.device, torch.float32)


def embed_lr(optimizer, config: TrainConfig) -> float | None:
    """The word vectors' learning rate when it is not the model's (see `parameter_groups`): 0 when frozen."""
    if config.embed_lr_scale == 1:
        return None
    return optimizer.param_groups[1]["lr"] if len(optimizer.param_groups) > 1 else 0.0


def evaluate(model, encoded, index, labels, criterion, device, batch_size) -> dict:
    """Loss and scores of the posts `index` (validation), forward only."""
    model.eval()
    total_loss, predictions, truth = 0.0, [], []
    with torch.inference_mode():
        for batch_index in length_buckets(encoded, index, batch_size=batch_size):
            batch = make_batch(encoded, batch_index).to(device)
            target = torch.from_numpy(labels[batch_index]).to(device)
            logits = model(batch.words, batch.sent_lengths, batch.doc_lengths).logits
            total_loss += criterion(logits, target).item() * len(batch_index)
            predictions.append(logits.argmax(-1).cpu().numpy())
            truth.append(labels[batch_index])
    return {"loss": total_loss / len(index), **scores(np.concatenate(truth), np.concatenate(predictions))}


def next_version(settings: Settings) -> int:
    """The next free number: after every registered version, checkpoint and unfinished run."""
    with session_scope(settings.database_url) as session:
        registered = queries.known_versions(session)
    root = Path(settings.checkpoint_dir)
    # an unfinished run counts once it has saved an epoch; an empty folder (a run that failed before
    # its first epoch) is reused
    partial = [int(p.name[1:-len(".partial")]) for p in root.glob("v*.partial")
               if p.name[1:-8].isdigit() and any(p.iterdir())]
    return max([0, *registered, *existing_versions(root), *partial]) + 1


def reserve_version(settings: Settings) -> int:
    """The next free number, reserved by creating `vN.partial/.reserved` exclusively: runs started
    at once into the same checkpoint folder get different numbers."""
    root = Path(settings.checkpoint_dir)
    version = next_version(settings)
    while True:
        folder = partial_dir(root, version)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            (folder / RESERVED).open("x").close()
            return version
        except FileExistsError:  # another run holds it
            version += 1


def thresholds_from_validation(loaded: LoadedModel, tokens, device) -> dict:
    """Failure thresholds: the fixed rules plus validation medians of sentence and word entropy."""
    loaded.thresholds = {**FIXED_THRESHOLDS, "diffuse_sentence_attention": np.inf, "high_word_entropy": np.inf}
    results = classify_tokenized(loaded, tokens, device=str(next(loaded.model.parameters()).device))
    return {**FIXED_THRESHOLDS,
            "diffuse_sentence_attention": float(np.median([r.summary["sent_entropy"] for r in results])),
            "high_word_entropy": float(np.median([r.summary["word_entropy"] for r in results]))}


def run_training(settings: Settings, config: TrainConfig, console: Console | None = None,
                 resume: int | None = None) -> TrainResult:
    """Train a new version (or continue `resume`) and register it."""
    upgrade(settings.database_url)
    version = resume if resume is not None else reserve_version(settings)
    try:
        with subnormals_flushed():
            return _run_training(settings, config, console or Console(stderr=True), resume, version)
    except BaseException as exc:
        folder = partial_dir(settings.checkpoint_dir, version)
        saved = (folder / RUN_STATE_FILE).exists()
        if resume is None and not saved:
            shutil.rmtree(folder, ignore_errors=True)  # no epoch was saved: the number is free again
        if saved and isinstance(exc, KeyboardInterrupt):
            raise Interrupted(version) from None  # after the epochs (scoring, baselines, writing)
        raise


@contextmanager
def subnormals_flushed():
    """Subnormal floats read and written as zero while training. AdamW's first moments of the word
    vectors a batch lacks shrink by 0.9 a step and turn subnormal after ~800 steps; on a CPU
    subnormal arithmetic made each optimizer step 3-4x slower."""
    flushing = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if flushing:
            torch.set_flush_denormal(False)  # the process's default again (torch has no getter)


def _run_training(settings: Settings, config: TrainConfig, console: Console, resume: int | None,
                  version: int) -> TrainResult:
    started = time.perf_counter()
    device = resolve_device(settings.device)
    root = Path(settings.checkpoint_dir)

    state = None
    if resume is not None:
        state = load_run_state(partial_dir(root, resume))
        config = TrainConfig(**state.progress["config"])
        console.print(f"resuming v{resume} after epoch {state.progress['epoch']} of {config.epochs}")
    seed_everything(config.seed)
    vectors = load_vectors(config.embeddings) if state is None else None  # a bad file fails before the text work

    corpus = limit_corpus(load_corpus(settings.data, config.protocol), config)
    console.print(f"corpus: {len(corpus.train)} train / {len(corpus.test)} test posts, protocol {config.protocol}")
    if state is None:
        pipeline = TextPipeline.train(corpus.train.raw, protocol=config.protocol, max_sents=config.max_sents,
                                      max_words=config.max_words)
    else:
        pipeline = TextPipeline.from_json(state.progress["text"])
    train_tokens = pipeline.tokenize_many(corpus.train.raw)
    test_tokens = pipeline.tokenize_many(corpus.test.raw)
    if state is None:
        vocab = Vocabulary.build(train_tokens, min_count=config.min_count, max_size=config.max_vocab)
        if vectors is not None and vectors.dim != config.embed_dim:
            console.print(f"embed_dim set to {vectors.dim} to match {vectors.source} (the preset says {config.embed_dim})")
            config = replace(config, embed_dim=vectors.dim)
        matrix, coverage = embedding_matrix(vocab, vectors, dim=config.embed_dim, seed=config.seed)
    else:
        vocab, matrix, coverage = Vocabulary(state.progress["vocab"]), None, state.progress["coverage"]
    encoded = encode_documents(train_tokens, vocab)
    console.print(f"vocabulary: {len(vocab)} words, {config.embeddings} coverage {coverage:.1%}; "
                  f"text ready in {time.perf_counter() - started:.0f}s")

    labels = corpus.train.labels
    train_index, val_index = train_validation_split(len(corpus.train), seed=config.seed,
                                                    validation_share=config.validation_share)
    num_classes = len(corpus.label_names)
    model = HAN(model_config(config, len(vocab), num_classes),
                torch.from_numpy(matrix) if matrix is not None else None).to(device)
    criterion = make_criterion(labels, num_classes, config, device)
    optimizer = make_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs, eta_min=config.min_lr)

    history, best_f1, best_state, stale, first_epoch = [], -1.0, None, 0, 1
    if state is not None:
        model.load_state_dict(state.model_state)
        load_optimizer_state(optimizer, state.optimizer_state)
        scheduler.load_state_dict(state.scheduler_state)
        torch.set_rng_state(state.rng_state)
        history, best_f1, stale = state.progress["history"], state.progress["best_f1"], state.progress["stale"]
        best_state, first_epoch = state.best_state, state.progress["epoch"] + 1
    progress_meta = {"version": version, "text": pipeline.to_json(), "vocab": vocab.words, "coverage": coverage}

    interrupted = False
    try:
        for epoch in range(first_epoch, config.epochs + 1):
            if stale >= config.patience:
                break
            epoch_started = time.perf_counter()
            row = train_epoch(model, encoded, train_index, labels, criterion, optimizer, config, epoch, device,
                              console)
            epoch_train = time.perf_counter() - epoch_started
            val = evaluate(model, encoded, val_index, labels, criterion, device, 2 * config.batch_size)
            row.update({"val_loss": val["loss"], "val_acc": val["accuracy"], "val_f1": val["weighted_f1"],
                        "lr": optimizer.param_groups[0]["lr"],
                        "embed_lr": embed_lr(optimizer, config),
                        "train_seconds": round(epoch_train, 1),
                        "val_seconds": round(time.perf_counter() - epoch_started - epoch_train, 1)})
            scheduler.step()
            history.append(row)
            improved = val["weighted_f1"] > best_f1
            if improved:
                best_f1, best_state, stale = val["weighted_f1"], copy.deepcopy(model.state_dict()), 0
            else:
                stale += 1
            save_run_state(partial_dir(root, version), model=model, best_state=best_state, optimizer=optimizer,
                           scheduler=scheduler, progress={**progress_meta, "epoch": epoch, "best_f1": best_f1,
                                                          "stale": stale, "history": history,
                                                          "config": config.to_json()})
            # printed once the epoch is saved: from here on Ctrl-C keeps it
            console.print(f"epoch {epoch}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f} | "
                          f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f} F1 {row['val_f1']:.4f} | "
                          f"{row['train_seconds']:.0f}+{row['val_seconds']:.0f} s" + (" (best)" if improved else ""))
            if stale >= config.patience:
                console.print(f"early stop: no better validation F1 for {config.patience} epochs")
    except KeyboardInterrupt:
        if best_state is None:
            shutil.rmtree(partial_dir(root, version), ignore_errors=True)
            raise
        interrupted = True
        console.print(f"interrupted: writing the best epoch so far; continue with --resume v{version}")
    train_seconds = time.perf_counter() - started

    model.load_state_dict(best_state)
    model.eval()
    loaded = LoadedModel(version, Path(), model, pipeline, vocab, corpus.label_names, {}, {})
    thresholds = thresholds_from_validation(loaded, [train_tokens[i] for i in val_index], device)
    loaded.thresholds = thresholds
    test_predictions = np.array([r.predicted for r in classify_tokenized(loaded, test_tokens, device=device)])
    metrics = scores(corpus.test.labels, test_predictions)
    console.print("TF-IDF baselines ...")
    baselines = run_baselines(corpus.train.texts, corpus.train.labels, corpus.test.texts, corpus.test.labels)
    metrics.update({
        "best_val_f1": best_f1, "epochs_trained": len(history), "interrupted": interrupted,
        "embeddings": config.embeddings, "embedding_coverage": coverage, "vocab_size": len(vocab),
        "train_posts": len(train_index), "validation_posts": len(val_index), "test_posts": len(corpus.test),
        "protocol": config.protocol, "train_seconds": train_seconds, "device": device,
        "parameters": sum(p.numel() for p in model.parameters()), "baselines": baselines,
        "resumed": resume is not None,
    })

    final_version = version if not (root / f"v{version}").exists() else next_version(settings)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        report = write_training_report(
            Path(tmp) / "report", label_names=corpus.label_names, train_labels=corpus.train.labels,
            test_labels=corpus.test.labels, history=history, test_predictions=test_predictions,
            comparison={f"HAN v{final_version}": metrics, **{b["name"]: b for b in baselines.values()}},
            summary=experiment_summary(final_version, config, metrics))
        path = save_checkpoint(root, version=final_version, model=model.cpu(), pipeline=pipeline, vocab=vocab,
                               label_names=corpus.label_names, thresholds=thresholds,
                               extra_config={"preset": config.preset, "training": config.to_json(),
                                             "data": {"protocol": config.protocol, "source": str(settings.data)}},
                               metrics=metrics, history=history, report_dir=report)
    with session_scope(settings.database_url) as session:
        queries.register_version(session, version=final_version, path=str(path.resolve()),
                                 sha256=file_sha256(path / WEIGHTS), preset=config.preset,
                                 protocol=config.protocol, metrics=metrics, train_seconds=train_seconds)
    if not interrupted:
        shutil.rmtree(partial_dir(root, version), ignore_errors=True)
    return TrainResult(final_version, path, metrics, train_seconds, interrupted)


def train_step(model, forward, target, criterion, optimizer, config: TrainConfig):
    """One optimizer step: logits = forward() (under bfloat16 autocast with precision=bf16), loss,
    backward, gradient clipping, AdamW. Also what `python -m bench train` times."""
    with torch.autocast(target.device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16"):
        logits = forward().float()
    loss = criterion(logits, target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    return loss, logits


def train_epoch(model, encoded, train_index, labels, criterion, optimizer, config, epoch, device, console) -> dict:
    model.train()
    batches = length_buckets(encoded, train_index, batch_size=config.batch_size, shuffle=True,
                             seed=config.seed + epoch)
    total_loss, correct, seen = 0.0, 0, 0
    with _progress(console) as progress:
        task = progress.add_task(f"epoch {epoch}/{config.epochs}", total=len(batches))
        for batch_index in batches:
            batch = make_batch(encoded, batch_index).to(device)
            target = torch.from_numpy(labels[batch_index]).to(device)
            words = batch.words
            if config.word_dropout:  # unknown words, as new posts bring them (padding stays padding)
                drop = (torch.rand(words.shape, device=words.device) < config.word_dropout) & (words > UNK)
                words = words.masked_fill(drop, UNK)
            loss, logits = train_step(model, lambda: model(words, batch.sent_lengths, batch.doc_lengths).logits,
                                      target, criterion, optimizer, config)
            value = loss.item()
            if not math.isfinite(value):
                raise TrainingError(f"epoch {epoch}: the training loss became {value}; nothing of this epoch is "
                                    "kept (a lower lr or grad_clip usually helps)")
            total_loss += value * len(batch_index)
            correct += (logits.argmax(-1) == target).sum().item()
            seen += len(batch_index)
            progress.advance(task)
    return {"epoch": epoch, "train_loss": total_loss / seen, "train_acc": correct / seen}


def experiment_summary(version: int, config: TrainConfig, metrics: dict) -> dict:
    name, best = best_baseline(metrics["baselines"])
    return {
        "experiment": f"HAN v{version}", "preset": config.preset, "protocol": config.protocol,
        "embeddings": config.embeddings, "embedding_coverage": metrics["embedding_coverage"],
        "train_samples": metrics["train_posts"] + metrics["validation_posts"], "test_samples": metrics["test_posts"],
        "vocab_size": metrics["vocab_size"], "embed_dim": config.embed_dim, "word_hidden_dim": config.word_hidden,
        "sent_hidden_dim": config.sent_hidden, "num_heads": config.num_heads, "dropout": config.dropout,
        "top_k_words": config.top_k, "epochs_trained": metrics["epochs_trained"],
        "best_val_f1": metrics["best_val_f1"], "test_accuracy": metrics["accuracy"],
        "test_f1": metrics["weighted_f1"], "test_macro_f1": metrics["macro_f1"],
        "total_params": metrics["parameters"], "train_seconds": round(metrics["train_seconds"], 1),
        "device": metrics["device"], "best_baseline": best["name"], "best_baseline_accuracy": best["accuracy"],
        "best_baseline_macro_f1": best["macro_f1"], "interrupted": metrics["interrupted"],
    }


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), console=console, transient=False)
