"""The reference's training artifacts (sections 3, 8, 10, 11, 14), written into `vN/report/`.

    write_training_report(folder, label_names=..., train_labels=..., test_labels=..., history=...,
                          test_predictions=..., comparison=..., summary=...)

Files: class_distribution.csv/png, training_history.csv/png, model_comparison.csv/png,
per_class_metrics.csv/png, confusion_matrix.png, experiment_summary.json.
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from han.plots import confusion_png, per_group_f1_png, save


def class_distribution(folder: Path, label_names, train_labels, test_labels) -> None:
    n = len(label_names)
    train = np.bincount(train_labels, minlength=n)
    test = np.bincount(test_labels, minlength=n)
    pd.DataFrame({"id": range(n), "category": label_names, "train": train, "test": test, "total": train + test,
                  "train_pct": np.round(100 * train / max(1, train.sum()), 2)}).to_csv(
        folder / "class_distribution.csv", index=False)
    fig, ax = plt.subplots(figsize=(13, 5.5))
    x = np.arange(n)
    ax.bar(x - 0.2, train, 0.4, label="train", color="steelblue")
    ax.bar(x + 0.2, test, 0.4, label="test", color="darkorange")
    ax.set_xticks(x, label_names, rotation=45, ha="right", fontsize=9)
    ax.set_ylabel("posts")
    ax.set_title("20 Newsgroups: posts per group")
    ax.legend()
    save(fig, folder / "class_distribution.png")


def training_history(folder: Path, history: list[dict]) -> None:
    frame = pd.DataFrame(history)
    frame.to_csv(folder / "training_history.csv", index=False)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    epochs = frame["epoch"]
    panels = [("loss", [("train_loss", "train"), ("val_loss", "validation")]),
              ("accuracy", [("train_acc", "train"), ("val_acc", "validation")]),
              ("validation weighted F1", [("val_f1", "validation")]),
              ("learning rate", [("lr", "model"), ("embed_lr", "word vectors")])]
    for ax, (title, series) in zip(axes.flat, panels):
        # word vectors on their own learning rate (embed_lr_scale != 1): a second line; else one line
        series = [(column, label) for column, label in series
                  if column in frame and frame[column].notna().any()]
        for column, label in series:
            ax.plot(epochs, frame[column], marker="o", label=label)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if len(epochs) <= 20:  # epochs are whole numbers: a tick each (one epoch: a single tick)
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend()
    save(fig, folder / "training_history.png")


def model_comparison(folder: Path, comparison: dict[str, dict]) -> None:
    metrics = ["accuracy", "weighted_precision", "weighted_recall", "weighted_f1", "macro_f1"]
    frame = pd.DataFrame([{"model": name, **{m: round(v[m], 4) for m in metrics}} for name, v in comparison.items()])
    frame.to_csv(folder / "model_comparison.csv", index=False)
    fig, ax = plt.subplots(figsize=(12, 5.5))
    x = np.arange(len(frame))
    width = 0.16
    for i, metric in enumerate(metrics):
        bars = ax.bar(x + (i - 2) * width, frame[metric], width, label=metric)
        if metric == "accuracy":
            ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set_xticks(x, frame["model"])
    low = max(0.0, float(frame[metrics].min().min()) - 0.1)
    ax.set_ylim(low, 1.0)
    ax.set_title("test metrics: HAN and TF-IDF baselines")
    ax.legend(ncols=5, fontsize=8, loc="upper center")
    save(fig, folder / "model_comparison.png")


def per_class(folder: Path, label_names, labels, predictions) -> pd.DataFrame:
    ids = np.arange(len(label_names))
    precision, recall, f1, support = precision_recall_fscore_support(labels, predictions, labels=ids, zero_division=0)
    frame = pd.DataFrame({"id": ids, "category": label_names, "precision": precision, "recall": recall,
                          "f1": f1, "support": support}).sort_values("f1")
    frame.to_csv(folder / "per_class_metrics.csv", index=False)
    per_group_f1_png(frame.rename(columns={"category": "group"}), folder / "per_class_f1.png",
                     title="per-group F1 on the test split")
    return frame


def confusion(folder: Path, label_names, labels, predictions) -> None:
    matrix = confusion_matrix(labels, predictions, labels=np.arange(len(label_names)))
    confusion_png(pd.DataFrame(matrix, index=label_names, columns=label_names), folder / "confusion_matrix.png",
                  title="confusion matrix (test split)")


def write_training_report(folder: Path, *, label_names, train_labels, test_labels, history, test_predictions,
                          comparison, summary) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    class_distribution(folder, label_names, train_labels, test_labels)
    training_history(folder, history)
    model_comparison(folder, comparison)
    per_class(folder, label_names, test_labels, test_predictions)
    confusion(folder, label_names, test_labels, test_predictions)
    (folder / "experiment_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return folder
