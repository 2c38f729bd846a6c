"""Analyses over stored predictions, read from the `attention_stats` view with parameterised SQL.

    frame = labelled_stats(session, since=3)
    table = failure_modes(frame); stats = attention_by_outcome(frame)
"""
from __future__ import annotations

import pandas as pd
from sqlalchemy import text
from sqlalchemy.orm import Session

FLAGS = ("word_over_concentration", "diffuse_sentence_attention", "short_document", "high_word_entropy")
STATS = ("word_entropy", "word_max", "word_max_mean", "sent_entropy", "sent_max", "gate_mean",
         "num_sentences", "num_words")


def labelled_stats(session: Session, *, since: int = 1) -> pd.DataFrame:
    """Rows of attention_stats for versions >= `since` whose post came with a true label."""
    query = text("SELECT * FROM attention_stats WHERE version >= :since AND correct IS NOT NULL")
    return pd.DataFrame(session.execute(query, {"since": since}).mappings().all())


def failure_modes(frame: pd.DataFrame) -> pd.DataFrame:
    """Per flag: count and share among incorrect and among correct predictions."""
    incorrect, correct = frame[frame["correct"] == 0], frame[frame["correct"] == 1]
    rows = []
    for flag in FLAGS:
        n_inc, n_cor = int(incorrect[flag].sum()), int(correct[flag].sum())
        rows.append({"failure_mode": flag,
                     "incorrect_count": n_inc, "incorrect_share": n_inc / len(incorrect) if len(incorrect) else None,
                     "correct_count": n_cor, "correct_share": n_cor / len(correct) if len(correct) else None})
    return pd.DataFrame(rows)


def attention_by_outcome(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation (n-1) of each statistic for correct and incorrect predictions."""
    rows = []
    for stat in STATS:
        row = {"statistic": stat}
        for name, value in (("correct", 1), ("incorrect", 0)):
            values = frame.loc[frame["correct"] == value, stat].astype(float)
            row[f"{name}_mean"] = float(values.mean()) if len(values) else None
            row[f"{name}_std"] = float(values.std()) if len(values) > 1 else None
        rows.append(row)
    return pd.DataFrame(rows)
