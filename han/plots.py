"""Pictures shared by the training report and the analyses (matplotlib, no screen needed).

    confusion_png(matrix_frame, "confusion_matrix.png")
    per_group_f1_png(per_group_frame, "per_class_f1.png")
    outcome_histograms_png(frame, ["word_entropy", ...], "attention_statistics.png")
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

DPI = 110


def save(fig, path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return Path(path)


def confusion_png(matrix: pd.DataFrame, path, title: str = "confusion matrix") -> Path:
    """matrix: counts, rows true groups, columns predicted groups (same order)."""
    values = matrix.to_numpy()
    size = max(6, 0.55 * len(matrix) + 2)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(values, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.04)
    ax.set_xticks(np.arange(values.shape[1]), list(matrix.columns), rotation=45, ha="right", fontsize=8)
    ax.set_yticks(np.arange(values.shape[0]), list(matrix.index), fontsize=8)
    threshold = values.max() / 2 if values.size else 0
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if values[i, j]:
                ax.text(j, i, str(values[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if values[i, j] > threshold else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return save(fig, path)


def per_group_f1_png(per_group: pd.DataFrame, path, title: str = "per-group F1") -> Path:
    """per_group: columns group, f1, support (any order; drawn sorted by F1)."""
    frame = per_group.sort_values("f1")
    fig, ax = plt.subplots(figsize=(10, max(4, 0.35 * len(frame) + 1.5)))
    bars = ax.barh(frame["group"], frame["f1"], color=plt.cm.RdYlGn(frame["f1"].to_numpy()))
    ax.bar_label(bars, fmt="%.3f", fontsize=8, padding=2)
    support = frame["support"].to_numpy()
    if support.sum():
        weighted = float(np.average(frame["f1"], weights=support))
        ax.axvline(weighted, color="red", linestyle="--", label=f"weighted F1 {weighted:.3f}")
        ax.legend(loc="lower right")
    ax.set_xlim(0, 1.08)
    ax.set_xlabel("F1")
    ax.set_title(title)
    return save(fig, path)


def outcome_histograms_png(frame: pd.DataFrame, columns, path, title: str) -> Path:
    """One histogram per column, correct (green) vs incorrect (red) predictions."""
    cols = 2
    rows = int(np.ceil(len(columns) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(12, 3.6 * rows), squeeze=False)
    for ax, column in zip(axes.flat, columns):
        values = frame[column].astype(float)
        bins = np.histogram_bin_edges(values, bins=30)
        for outcome, color, label in ((1, "green", "correct"), (0, "red", "incorrect")):
            part = values[frame["correct"] == outcome]
            if len(part):
                ax.hist(part, bins=bins, alpha=0.6, color=color, label=f"{label} (n={len(part)})")
        ax.set_xlabel(column)
        ax.set_ylabel("posts")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(columns):]:
        ax.axis("off")
    fig.suptitle(title)
    return save(fig, path)


def threshold_histograms_png(frame: pd.DataFrame, panels, path, title: str) -> Path:
    """panels: [(column, threshold, label)]; histograms of the column with the threshold drawn."""
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for ax, (column, threshold, label) in zip(axes.flat, panels):
        ax.hist(frame[column].astype(float), bins=20, color="red", alpha=0.7, edgecolor="black")
        ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.2f}")
        ax.set_xlabel(label)
        ax.set_ylabel("posts")
        ax.legend()
    fig.suptitle(title)
    return save(fig, path)
