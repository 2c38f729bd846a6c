"""Scores shared by the trainer, the baselines and the reports (weighted averages as the reference)."""
from __future__ import annotations

from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score


def scores(labels, predictions) -> dict:
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "weighted_precision": float(precision_score(labels, predictions, average="weighted", zero_division=0)),
        "weighted_recall": float(recall_score(labels, predictions, average="weighted", zero_division=0)),
        "weighted_f1": float(f1_score(labels, predictions, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(labels, predictions, average="macro", zero_division=0)),
    }
