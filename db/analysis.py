"""Analyses over stored predictions (reference sections 11-13), read from the `attention_stats` view.

Every analysis starts from a `Selection` (versions, job, group) turned into one parameterised
query; the rest is pandas over the rows it returns.

    frame = select_stats(session, Selection(since=3))
    failure_table(frame); flag_lift_by_group(frame); attention_by_outcome(frame)
    per_group_metrics(frame); confusion(frame, label_names); confused_pairs(frame)
    compare_versions(session, 1, 2)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import text
from sqlalchemy.orm import Session

from db import queries

FLAGS = ("word_over_concentration", "diffuse_sentence_attention", "short_document", "high_word_entropy")
STATS = ("word_entropy", "word_max", "word_max_mean", "sent_entropy", "sent_max", "gate_mean",
         "num_sentences", "num_words")


class AnalysisError(ValueError):
    """A selection that names an unknown version, or that matches nothing to analyse."""


@dataclass(frozen=True)
class Selection:
    since: int | None = None  # versions >= since
    until: int | None = None  # versions <= until
    model: int | None = None  # exactly this version
    job: str | None = None
    label: str | None = None  # true group
    labelled_only: bool = True

    def where(self) -> tuple[str, dict]:
        clauses, params = [], {}
        for column, op, name in (("version", ">=", "since"), ("version", "<=", "until"), ("version", "=", "model"),
                                 ("job_id", "=", "job"), ("true_label", "=", "label")):
            value = getattr(self, name)
            if value is not None:
                clauses.append(f"{column} {op} :{name}")
                params[name] = value
        if self.labelled_only:
            clauses.append("correct IS NOT NULL")
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def describe(self) -> str:
        parts = [f"versions >= v{self.since}" if self.since else "", f"versions <= v{self.until}" if self.until else "",
                 f"v{self.model}" if self.model else "", f"job {self.job}" if self.job else "",
                 f"group {self.label}" if self.label else ""]
        return ", ".join(p for p in parts if p) or "all versions"


def check_versions(session: Session, *versions: int | None) -> None:
    known = queries.known_versions(session)
    for version in versions:
        if version is not None and version not in known:
            raise AnalysisError(f"no v{version} in the registry; known versions: "
                                + (", ".join(f"v{v}" for v in known) or "none"))


def check_range(session: Session, since: int | None, until: int | None) -> None:
    known = queries.known_versions(session)
    inside = [v for v in known if (since is None or v >= since) and (until is None or v <= until)]
    if (since is not None or until is not None) and not inside:
        wanted = " and ".join(p for p in (f">= v{since}" if since else "", f"<= v{until}" if until else "") if p)
        raise AnalysisError(f"no versions {wanted}; known versions: " + (", ".join(f"v{v}" for v in known) or "none"))


def select_stats(session: Session, selection: Selection) -> pd.DataFrame:
    """Rows of attention_stats matching the selection (one query, bound parameters)."""
    check_versions(session, selection.model)
    check_range(session, selection.since, selection.until)
    where, params = selection.where()
    rows = session.execute(text(f"SELECT * FROM attention_stats{where} ORDER BY prediction_id"), params)
    frame = pd.DataFrame(rows.mappings().all())
    if frame.empty:
        what = "labelled predictions" if selection.labelled_only else "predictions"
        raise AnalysisError(f"no {what} match ({selection.describe()})")
    return frame


def _share(count: int, total: int):
    return count / total if total else None


def failure_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per flag: count and share among incorrect and correct predictions, and the error rate of
    flagged vs unflagged posts (lift > 1: the flag predicts errors)."""
    incorrect, correct = frame[frame["correct"] == 0], frame[frame["correct"] == 1]
    rows = []
    for flag in FLAGS:
        flagged, unflagged = frame[frame[flag] == 1], frame[frame[flag] == 0]
        error_flagged = _share(int((flagged["correct"] == 0).sum()), len(flagged))
        error_unflagged = _share(int((unflagged["correct"] == 0).sum()), len(unflagged))
        rows.append({
            "failure_mode": flag,
            "incorrect_count": int(incorrect[flag].sum()), "incorrect_share": _share(int(incorrect[flag].sum()), len(incorrect)),
            "correct_count": int(correct[flag].sum()), "correct_share": _share(int(correct[flag].sum()), len(correct)),
            "flagged": len(flagged), "error_rate_flagged": error_flagged,
            "unflagged": len(unflagged), "error_rate_unflagged": error_unflagged,
            "lift": error_flagged / error_unflagged if error_flagged is not None and error_unflagged else None,
        })
    return pd.DataFrame(rows)


def flag_lift_by_group(frame: pd.DataFrame) -> pd.DataFrame:
    """Error rate of flagged vs unflagged posts, for each true group and flag."""
    rows = []
    for group, part in frame.groupby("true_label", sort=True):
        for flag in FLAGS:
            flagged, unflagged = part[part[flag] == 1], part[part[flag] == 0]
            rows.append({"group": group, "failure_mode": flag, "flagged": len(flagged),
                         "error_rate_flagged": _share(int((flagged["correct"] == 0).sum()), len(flagged)),
                         "unflagged": len(unflagged),
                         "error_rate_unflagged": _share(int((unflagged["correct"] == 0).sum()), len(unflagged))})
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


def attention_distribution(frame: pd.DataFrame) -> pd.DataFrame:
    """Quantiles of each statistic for correct and incorrect predictions."""
    rows = []
    for stat in STATS:
        for name, value in (("correct", 1), ("incorrect", 0)):
            values = frame.loc[frame["correct"] == value, stat].astype(float)
            if len(values):
                q = values.quantile([0.0, 0.25, 0.5, 0.75, 1.0]).to_numpy()
                rows.append({"statistic": stat, "outcome": name, "n": len(values), "mean": float(values.mean()),
                             "min": q[0], "p25": q[1], "median": q[2], "p75": q[3], "max": q[4]})
    return pd.DataFrame(rows)


def per_group_metrics(frame: pd.DataFrame) -> pd.DataFrame:
    """Precision, recall, F1 and support of every group seen (true or predicted), sorted by F1."""
    groups = sorted(set(frame["true_label"]) | set(frame["predicted_label"]))
    rows = []
    for g in groups:
        tp = int(((frame["true_label"] == g) & (frame["predicted_label"] == g)).sum())
        predicted = int((frame["predicted_label"] == g).sum())
        support = int((frame["true_label"] == g).sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"group": g, "precision": precision, "recall": recall, "f1": f1, "support": support})
    return pd.DataFrame(rows).sort_values(["f1", "group"], kind="stable").reset_index(drop=True)


def confusion(frame: pd.DataFrame, label_names=None) -> pd.DataFrame:
    """Counts: rows are true groups, columns predicted groups."""
    labels = list(label_names) if label_names else sorted(set(frame["true_label"]) | set(frame["predicted_label"]))
    matrix = pd.crosstab(frame["true_label"], frame["predicted_label"]).reindex(index=labels, columns=labels,
                                                                               fill_value=0)
    matrix.index.name, matrix.columns.name = "true", "predicted"
    return matrix.fillna(0).astype(int)


def confused_pairs(frame: pd.DataFrame, top: int | None = None) -> pd.DataFrame:
    """Wrong (true, predicted) pairs by count, with their share of the true group."""
    wrong = frame[frame["true_label"] != frame["predicted_label"]]
    support = frame["true_label"].value_counts()
    pairs = wrong.groupby(["true_label", "predicted_label"]).size().reset_index(name="count")
    pairs["share_of_true"] = pairs["count"] / pairs["true_label"].map(support)
    pairs = pairs.rename(columns={"true_label": "true", "predicted_label": "predicted"})
    pairs = pairs.sort_values(["count", "true", "predicted"], ascending=[False, True, True]).reset_index(drop=True)
    return pairs.head(top) if top else pairs


def summary_metrics(frame: pd.DataFrame) -> dict:
    metrics = per_group_metrics(frame)
    supported = metrics[metrics["support"] > 0]
    return {"predictions": len(frame), "accuracy": float((frame["correct"] == 1).mean()),
            "macro_f1": float(supported["f1"].mean()),
            "weighted_f1": float(np.average(supported["f1"], weights=supported["support"]))}


def latest_per_post(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per post id: the newest prediction (a post submitted twice to a version counts once)."""
    return frame.sort_values("prediction_id").drop_duplicates("post_id", keep="last").set_index("post_id")


def compare_versions(session: Session, a: int, b: int, *, job: str | None = None, label: str | None = None) -> dict:
    """Deltas between two versions on the labelled posts both have predicted (matched by post id)."""
    if a == b:
        raise AnalysisError(f"compare needs two different versions (got v{a} twice)")
    left = latest_per_post(select_stats(session, Selection(model=a, job=job, label=label)))
    right = latest_per_post(select_stats(session, Selection(model=b, job=job, label=label)))
    common = left.index.intersection(right.index)
    if not len(common):
        raise AnalysisError(f"v{a} and v{b} have no labelled post in common; submit the same posts to both")
    left, right = left.loc[common], right.loc[common]
    ma, mb = summary_metrics(left.reset_index()), summary_metrics(right.reset_index())
    metrics = pd.DataFrame([{"metric": m, f"v{a}": ma[m], f"v{b}": mb[m], "delta": mb[m] - ma[m]}
                            for m in ("accuracy", "macro_f1", "weighted_f1")])
    flips = pd.DataFrame({"post_id": common, "true": left["true_label"],
                          f"v{a}": left["predicted_label"], f"v{b}": right["predicted_label"]}).reset_index(drop=True)
    right_to_wrong = flips[(left["correct"].to_numpy() == 1) & (right["correct"].to_numpy() == 0)]
    wrong_to_right = flips[(left["correct"].to_numpy() == 0) & (right["correct"].to_numpy() == 1)]
    shifts = pd.DataFrame([{"failure_mode": f, f"v{a}_rate": float(left[f].mean()), f"v{b}_rate": float(right[f].mean()),
                            "delta": float(right[f].mean() - left[f].mean())} for f in FLAGS])
    return {"posts": len(common), "metrics": metrics, "right_to_wrong": right_to_wrong.reset_index(drop=True),
            "wrong_to_right": wrong_to_right.reset_index(drop=True), "failure_shifts": shifts}
