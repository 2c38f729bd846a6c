"""The reference's error-analysis report files (sections 11-13), written from the database.

    write_analysis_report(session, Selection(since=2), "out/")

Files: confusion_matrix.png, per_class_metrics.csv, per_class_f1.png, confusion_analysis.csv,
attention_statistics.csv, attention_statistics.png, failure_analysis.csv, failure_modes.png,
failure_mode_report.txt.
"""
from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from db import analysis
from han.plots import confusion_png, outcome_histograms_png, per_group_f1_png, threshold_histograms_png

FILES = ["confusion_matrix.png", "per_class_metrics.csv", "per_class_f1.png", "confusion_analysis.csv",
         "attention_statistics.csv", "attention_statistics.png", "failure_analysis.csv", "failure_modes.png",
         "failure_mode_report.txt"]
ATTENTION_PLOT = ["word_entropy", "sent_entropy", "gate_mean", "word_max"]
DESCRIPTIONS = {
    "word_over_concentration": "mean per-sentence max word weight > 0.5: attention rests on single words",
    "diffuse_sentence_attention": "sentence entropy above the validation median: no sentence stands out",
    "short_document": "fewer than 3 sentences: little hierarchical context",
    "high_word_entropy": "mean word entropy above the validation median: word attention is uncertain",
}


def failure_mode_text(selection: analysis.Selection, frame, table) -> str:
    metrics = analysis.summary_metrics(frame)
    lines = ["FAILURE MODE ANALYSIS REPORT", "============================", "",
             f"selection: {selection.describe()}",
             f"labelled predictions: {metrics['predictions']}, accuracy {metrics['accuracy']:.4f}, "
             f"macro F1 {metrics['macro_f1']:.4f}", ""]
    for i, row in enumerate(table.itertuples(index=False), start=1):
        lines += [f"FAILURE MODE {i}: {row.failure_mode}", f"- rule: {DESCRIPTIONS[row.failure_mode]}"]
        if row.incorrect_share is not None:
            lines.append(f"- among incorrect predictions: {row.incorrect_count} ({row.incorrect_share:.1%})")
        if row.correct_share is not None:
            lines.append(f"- among correct predictions: {row.correct_count} ({row.correct_share:.1%})")
        rates = [f"flagged {row.error_rate_flagged:.1%} of {row.flagged}" if row.error_rate_flagged is not None else "",
                 f"unflagged {row.error_rate_unflagged:.1%} of {row.unflagged}"
                 if row.error_rate_unflagged is not None else ""]
        lines.append("- error rate: " + ", ".join(r for r in rates if r))
        if row.lift is not None:
            verdict = "predicts errors" if row.lift > 1.1 else "does not predict errors" if row.lift < 0.9 else "neutral"
            lines.append(f"- lift {row.lift:.2f}: {verdict}")
        lines.append("")
    return "\n".join(lines)


def write_analysis_report(session: Session, selection: analysis.Selection, out_dir) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frame = analysis.select_stats(session, selection)
    label_names = sorted(set(frame["true_label"]) | set(frame["predicted_label"]))
    confusion_png(analysis.confusion(frame, label_names), out / "confusion_matrix.png",
                  title=f"confusion matrix ({selection.describe()})")
    per_group = analysis.per_group_metrics(frame)
    per_group.to_csv(out / "per_class_metrics.csv", index=False)
    per_group_f1_png(per_group, out / "per_class_f1.png", title=f"per-group F1 ({selection.describe()})")
    analysis.confused_pairs(frame).to_csv(out / "confusion_analysis.csv", index=False)
    columns = ["post_id", "version", "true_label", "predicted_label", "correct", *analysis.STATS, *analysis.FLAGS]
    frame[columns].to_csv(out / "attention_statistics.csv", index=False)
    outcome_histograms_png(frame, ATTENTION_PLOT, out / "attention_statistics.png",
                           title=f"attention statistics, correct vs incorrect ({selection.describe()})")
    incorrect = frame[frame["correct"] == 0]
    incorrect[columns].to_csv(out / "failure_analysis.csv", index=False)
    failures = incorrect if len(incorrect) else frame
    threshold_histograms_png(failures, [
        ("word_max_mean", 0.5, "mean per-sentence max word weight"),
        ("sent_entropy", float(failures["sent_entropy"].median()), "sentence entropy (median drawn)"),
        ("num_sentences", 3, "sentences"),
        ("word_entropy", float(failures["word_entropy"].median()), "word entropy (median drawn)"),
    ], out / "failure_modes.png", title=f"incorrect predictions ({len(incorrect)})")
    table = analysis.failure_table(frame)
    (out / "failure_mode_report.txt").write_text(failure_mode_text(selection, frame, table) + "\n")
    return [out / name for name in FILES]
