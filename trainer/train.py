"""Train the HAN on 20 Newsgroups and write checkpoint vN with its metrics into the registry.

The loop follows the reference (section 8): AdamW, class-weighted cross-entropy with label
smoothing, cosine annealing, gradient clipping, early stopping on validation weighted F1. The test
split is scored through han.inference, the same code the worker runs.

    result = run_training(settings, preset("small"))
    result.version, result.metrics["accuracy"]
"""
from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score
from sklearn.utils.class_weight import compute_class_weight

from db import queries
from db.session import session_scope, upgrade
from han.batching import length_buckets, make_batch
from han.checkpoint import LoadedModel, existing_versions, file_sha256, save_checkpoint, WEIGHTS
from han.inference import classify_tokenized
from han.model import HAN, HANConfig
from han.settings import Settings, resolve_device
from han.text import TextPipeline, Vocabulary, encode_documents
from trainer.data import Corpus, load_corpus, train_validation_split
from trainer.embeddings import embedding_matrix
from trainer.presets import TrainConfig


@dataclass
class TrainResult:
    version: int
    path: Path
    metrics: dict
    train_seconds: float


def scores(labels, predictions) -> dict:
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "weighted_precision": float(precision_score(labels, predictions, average="weighted", zero_division=0)),
        "weighted_recall": float(recall_score(labels, predictions, average="weighted", zero_division=0)),
        "weighted_f1": float(f1_score(labels, predictions, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(labels, predictions, average="macro", zero_division=0)),
    }


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


def build_model(config: TrainConfig, vocab: Vocabulary, embeddings: np.ndarray, num_classes: int) -> HAN:
    model_config = HANConfig(vocab_size=len(vocab), embed_dim=config.embed_dim, word_hidden=config.word_hidden,
                             sent_hidden=config.sent_hidden, attention_dim=config.attention_dim,
                             num_layers=config.num_layers, num_heads=config.num_heads, top_k=config.top_k,
                             dropout=config.dropout, num_classes=num_classes)
    return HAN(model_config, torch.from_numpy(embeddings))


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
    with session_scope(settings.database_url) as session:
        registered = queries.known_versions(session)
    return max([0, *registered, *existing_versions(settings.checkpoint_dir)]) + 1


def run_training(settings: Settings, config: TrainConfig, console: Console | None = None) -> TrainResult:
    console = console or Console(stderr=True)
    started = time.perf_counter()
    seed_everything(config.seed)
    device = resolve_device(settings.device)
    upgrade(settings.database_url)

    corpus = limit_corpus(load_corpus(settings.data, config.protocol), config)
    console.print(f"corpus: {len(corpus.train)} train / {len(corpus.test)} test posts, protocol {config.protocol}")
    # raw posts through the same pipeline the worker runs: strip, clean, split, tokenise
    pipeline = TextPipeline.train(corpus.train.raw, protocol=config.protocol, max_sents=config.max_sents,
                                  max_words=config.max_words)
    train_tokens = pipeline.tokenize_many(corpus.train.raw)
    test_tokens = pipeline.tokenize_many(corpus.test.raw)
    vocab = Vocabulary.build(train_tokens, min_count=config.min_count, max_size=config.max_vocab)
    encoded = encode_documents(train_tokens, vocab)
    vectors, coverage = embedding_matrix(vocab, config.embeddings, dim=config.embed_dim, seed=config.seed)
    console.print(f"vocabulary: {len(vocab)} words, {config.embeddings} coverage {coverage:.1%}; "
                  f"text ready in {time.perf_counter() - started:.0f}s")

    labels = corpus.train.labels
    train_index, val_index = train_validation_split(len(corpus.train), seed=config.seed,
                                                    validation_share=config.validation_share)
    num_classes = len(corpus.label_names)
    model = build_model(config, vocab, vectors, num_classes).to(device)
    present = np.unique(labels)
    weights = np.ones(num_classes, dtype=np.float32)
    weights[present] = compute_class_weight("balanced", classes=present, y=labels)
    criterion = nn.CrossEntropyLoss(weight=torch.from_numpy(weights).to(device),
                                    label_smoothing=config.label_smoothing)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs, eta_min=config.min_lr)

    history, best_f1, best_state, stale = [], -1.0, None, 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        batches = length_buckets(encoded, train_index, batch_size=config.batch_size, shuffle=True,
                                 seed=config.seed + epoch)
        total_loss, correct, seen = 0.0, 0, 0
        with _progress(console) as progress:
            task = progress.add_task(f"epoch {epoch}/{config.epochs}", total=len(batches))
            for batch_index in batches:
                batch = make_batch(encoded, batch_index).to(device)
                target = torch.from_numpy(labels[batch_index]).to(device)
                logits = model(batch.words, batch.sent_lengths, batch.doc_lengths).logits
                loss = criterion(logits, target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                total_loss += loss.item() * len(batch_index)
                correct += (logits.argmax(-1) == target).sum().item()
                seen += len(batch_index)
                progress.advance(task)
        val = evaluate(model, encoded, val_index, labels, criterion, device, 2 * config.batch_size)
        row = {"epoch": epoch, "train_loss": total_loss / seen, "train_acc": correct / seen,
               "val_loss": val["loss"], "val_acc": val["accuracy"], "val_f1": val["weighted_f1"],
               "lr": optimizer.param_groups[0]["lr"]}
        scheduler.step()
        history.append(row)
        improved = val["weighted_f1"] > best_f1
        console.print(f"epoch {epoch}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f} | "
                      f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f} F1 {row['val_f1']:.4f}"
                      + (" (best)" if improved else ""))
        if improved:
            best_f1, best_state, stale = val["weighted_f1"], copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= config.patience:
                console.print(f"early stop: no better validation F1 for {config.patience} epochs")
                break
    model.load_state_dict(best_state)
    model.eval()
    train_seconds = time.perf_counter() - started

    # failure thresholds from the validation split, then the test split through the serving path
    loaded = LoadedModel(0, Path(), model, pipeline, vocab, corpus.label_names, {}, {})
    loaded.thresholds = {"word_over_concentration": 0.5, "diffuse_sentence_attention": float("inf"),
                         "short_document": 3, "high_word_entropy": float("inf")}
    val_results = classify_tokenized(loaded, [train_tokens[i] for i in val_index], device=device)
    thresholds = {
        "word_over_concentration": 0.5,
        "diffuse_sentence_attention": float(np.median([r.summary["sent_entropy"] for r in val_results])),
        "short_document": 3,
        "high_word_entropy": float(np.median([r.summary["word_entropy"] for r in val_results])),
    }
    test_results = classify_tokenized(loaded, test_tokens, device=device)
    metrics = scores(corpus.test.labels, [r.predicted for r in test_results])
    metrics.update({"best_val_f1": best_f1, "epochs_trained": len(history), "embedding_coverage": coverage,
                    "vocab_size": len(vocab), "train_posts": len(train_index), "validation_posts": len(val_index),
                    "test_posts": len(corpus.test), "protocol": config.protocol, "train_seconds": train_seconds,
                    "device": device})

    version = next_version(settings)
    path = save_checkpoint(settings.checkpoint_dir, version=version, model=model.cpu(), pipeline=pipeline,
                           vocab=vocab, label_names=corpus.label_names, thresholds=thresholds,
                           extra_config={"preset": config.preset, "training": config.to_json(),
                                         "data": {"protocol": config.protocol, "source": str(settings.data)}},
                           metrics=metrics, history=history)
    with session_scope(settings.database_url) as session:
        queries.register_version(session, version=version, path=str(path.resolve()),
                                 sha256=file_sha256(path / WEIGHTS), preset=config.preset,
                                 protocol=config.protocol, metrics=metrics, train_seconds=train_seconds)
    return TrainResult(version, path, metrics, train_seconds)


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), console=console, transient=False)
