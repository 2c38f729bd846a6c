"""python -m cli: thin commands over the han, trainer, worker and db packages.

Each command parses its options, calls one library function and prints. A user's mistake gets a
clear message and exit status 1, never a traceback.
"""
from __future__ import annotations

import signal
import sys

import click
from rich.console import Console

from han.settings import SettingsError, get_settings

# lines are never wrapped (they may be grepped); tables get 160 columns in pipes and logs
console = Console(soft_wrap=True) if sys.stdout.isatty() else Console(width=160, soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


class UserError(click.ClickException):
    """Printed as `error: ...`, exit status 1."""

    def show(self, file=None):
        from rich.text import Text

        err_console.print(Text.assemble(("error:", "red"), " ", self.message), highlight=False)


def settings_from(ctx_obj=None, **overrides):
    return get_settings().with_overrides(**overrides)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """Classify newsgroup posts with a Hierarchical Attention Network and analyse its mistakes."""


@cli.command()
@click.option("--preset", "preset_name", default="small", show_default=True, help="seed, small or tiny")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a preset field")
@click.option("--embeddings", help="glove-6b-50d (packaged), none, or a GloVe / word2vec file")
@click.option("--resume", metavar="vN", help="continue an interrupted run from its last finished epoch")
@click.option("--data", type=click.Path(), help="20news-bydate archive or folder [HAN_DATA]")
@click.option("--device", help="auto, cpu or cuda:N [HAN_DEVICE]")
@click.option("--checkpoint-dir", type=click.Path(), help="[HAN_CHECKPOINT_DIR]")
@click.option("--database-url", help="[HAN_DATABASE_URL]")
def train(preset_name, overrides, embeddings, resume, data, device, checkpoint_dir, database_url):
    """Train a HAN and register it as the next version.

    Ctrl-C writes the best epoch so far as a version; --resume continues that run.

    Example: python -m cli train --preset small --set epochs=3
    """
    from pathlib import Path

    import torch

    from trainer.data import DataError
    from trainer.embeddings import EmbeddingError
    from trainer.presets import PresetError, preset
    from trainer.run_state import RunStateError
    from trainer.train import Interrupted, run_training

    settings = settings_from(data=Path(data) if data else None, device=device,
                             checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir else None,
                             database_url=database_url)
    explicit_preset = click.get_current_context().get_parameter_source("preset_name") \
        == click.core.ParameterSource.COMMANDLINE
    if resume and (overrides or embeddings or explicit_preset):
        raise UserError("--resume continues a run with its own settings; drop --preset, --set and --embeddings")

    def stop(signum, frame):  # `kill` and `docker stop` end a run the way Ctrl-C does
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        config = preset(preset_name, [*overrides, *([f"embeddings={embeddings}"] if embeddings else [])])
        result = run_training(settings, config, console=err_console, resume=parse_version_option(resume))
    except (PresetError, DataError, EmbeddingError, RunStateError, ValueError) as exc:
        raise UserError(str(exc)) from None
    except Interrupted as exc:
        raise UserError(f"interrupted before v{exc.version} was written; its epochs are saved: finish it with "
                        f"--resume v{exc.version}") from None
    except KeyboardInterrupt:
        raise UserError("interrupted before any epoch was saved; nothing was written") from None
    except RuntimeError as exc:
        if isinstance(exc, torch.OutOfMemoryError) or "can't allocate memory" in str(exc):
            raise UserError("not enough memory for this model and batch size; smaller sizes (--set word_hidden=, "
                            f"batch_size=) fit ({str(exc).splitlines()[0][:200]})") from None
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    m = result.metrics
    best = max(m["baselines"].values(), key=lambda b: b["accuracy"])
    console.print(f"v{result.version}: test accuracy {m['accuracy']:.4f}, weighted F1 {m['weighted_f1']:.4f}, "
                  f"macro F1 {m['macro_f1']:.4f} ({m['test_posts']} posts, {m['protocol']} protocol); "
                  f"trained in {result.train_seconds:.0f}s; checkpoint {result.path}", highlight=False)
    console.print(f"best baseline: {best['name']} accuracy {best['accuracy']:.4f}, macro F1 {best['macro_f1']:.4f}",
                  highlight=False)
    if result.interrupted:
        sys.exit(130)


def output_format(function):
    return click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
                        show_default=True, help="how to print the result")(function)


def json_safe(value):
    """NaN and infinities become null: strict JSON has no spelling for them."""
    import math

    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def print_frame(frame, fmt: str, title: str | None = None, floats: str = "{:.4f}"):
    """A pandas frame as a rich table, CSV or JSON records on stdout."""
    import json as _json

    from rich.table import Table

    if fmt == "csv":
        click.echo(frame.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(_json.dumps(json_safe(frame.to_dict(orient="records")), indent=1, default=str))
    else:
        table = Table(title=title, title_justify="left")
        for column in frame.columns:
            table.add_column(str(column), justify="left" if frame[column].dtype == object else "right")
        for record in frame.itertuples(index=False):
            table.add_row(*[floats.format(v) if isinstance(v, float) else ("" if v is None else str(v))
                            for v in record])
        console.print(table)


def parse_version_option(value):
    from han.versions import parse_version

    if value is None:
        return None
    try:
        return parse_version(value)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def open_session(settings):
    from db.session import session_scope

    return session_scope(settings.database_url)


@cli.command()
@click.argument("file", type=click.Path())
@click.option("--model", "model", metavar="vN", help="model version (default: the newest)")
@click.option("--batch-size", default=128, show_default=True, help="posts per queued task")
@click.option("--wait", is_flag=True, help="show progress until the job is done, then a summary")
@click.option("--rejects", "rejects_file", type=click.Path(), help="write rejected lines here (JSON lines)")
@click.option("--new-job", is_flag=True, help="store the posts again even if this file was submitted before")
@click.option("--database-url", help="[HAN_DATABASE_URL]")
def submit(file, model, batch_size, wait, rejects_file, new_job, database_url):
    """Submit a JSON-lines file of posts for classification.

    Each line: {"id": ..., "text": ..., "label": optional group name}. Bad lines are reported with
    their line number and skipped; the rest go through. Submitting the same file to the same model
    again resumes its job instead of storing the posts twice. Exit status: 0 when every line was
    accepted (and, with --wait, every post classified), 2 when some lines were rejected, 3 when
    (with --wait) some posts could not be classified, 1 on an error.

    Example: python -m cli submit posts.jsonl --wait
    """
    import json as _json

    from db.queries import UnknownVersion
    from worker.intake import IntakeError
    from worker.submit import SubmitError, submit_file

    settings = settings_from(database_url=database_url)
    check_output(rejects_file)
    try:
        result = submit_file(settings, file, version=parse_version_option(model), batch_size=batch_size,
                             new_job=new_job)
    except (IntakeError, SubmitError, UnknownVersion) as exc:
        raise UserError(str(exc)) from None
    for r in result.rejects:
        err_console.print(f"{r.path}:{r.line}: rejected: {r.reason}", highlight=False, markup=False)
    if rejects_file:
        with open(rejects_file, "w", encoding="utf-8") as f:
            for r in result.rejects:
                f.write(_json.dumps(r.to_json()) + "\n")
    if result.job_id is None:
        raise UserError(f"{file}: no valid posts to submit ({len(result.rejects)} lines rejected)")
    if result.resumed:
        console.print(f"job {result.job_id}: this file was submitted before; "
                      + ("it is done" if result.status == "done" else
                         f"resumed, {result.batches} batches queued for its unfinished posts"), highlight=False)
    else:
        console.print(f"job {result.job_id}: {result.accepted} posts accepted, {len(result.rejects)} lines rejected, "
                      f"{result.batches} batches queued for v{result.version}", highlight=False)
    failed = 0
    if wait:
        wait_for_job(settings, result.job_id)
        failed = show_job(settings, result.job_id)["failed"]
    sys.exit(3 if failed else 2 if result.rejects else 0)


def wait_for_job(settings, job_id: str, poll: float = 0.5):
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from db import queries

    with Progress(TextColumn("classifying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[rate]}"), console=err_console) as progress:
        task = progress.add_task("job", total=None, rate="")
        started = time.monotonic()
        while True:
            with open_session(settings) as session:
                job = queries.get_job(session, job_id=job_id)
                done = queries.job_done_count(session, job=job)
                status, total = job.status, job.total_posts
            elapsed = time.monotonic() - started
            progress.update(task, total=total, completed=done,
                            rate=f"{done / elapsed:.0f} posts/s" if elapsed > 1 else "")
            if status == "done":
                return
            time.sleep(poll)


def job_report(settings, job_id: str) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    from db import queries

    with open_session(settings) as session:
        job = queries.get_job(session, job_id=job_id)
        if job is None:
            raise UserError(f"no job {job_id!r}")
        classified = queries.job_classified_count(session, job=job)
        failures = queries.job_failures(session, job=job)
        pairs = queries.job_labelled_results(session, job_id=job_id)
        report = {"job": job.id, "model": f"v{job.model_version}", "status": job.status, "source": job.source,
                  "posts": job.total_posts, "classified": classified, "failed": len(failures),
                  "rejected_lines": job.rejected_lines,
                  "created_at": str(job.created_at), "finished_at": str(job.finished_at or "")}
        if failures:
            report["failures"] = [f"{post}: {reason}" for post, reason in failures[:20]]
        if job.status == "submitting":
            report["hint"] = "submitting was interrupted: submit the same file again, or: python -m cli resume JOB"
    if pairs:
        truth, predicted = zip(*pairs)
        labels = sorted(set(truth))
        report.update({"labelled": len(pairs), "accuracy": accuracy_score(truth, predicted),
                       "macro_f1": f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)})
    return report


def show_job(settings, job_id: str, fmt: str = "table"):
    import json as _json

    report = job_report(settings, job_id)
    if fmt == "json":
        click.echo(_json.dumps(report, indent=1))
        return report
    for key, value in report.items():
        if isinstance(value, list):
            console.print(f"{key:>15}:", highlight=False)
            for item in value:
                console.print(f"{'':>17}{item}", highlight=False, markup=False)
        else:
            console.print(f"{key:>15}: {value:.4f}" if isinstance(value, float) else f"{key:>15}: {value}",
                          highlight=False, markup=False)
    return report


@cli.command()
@click.argument("job_id")
@click.option("--wait", is_flag=True, help="show progress until the job is done")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--database-url", help="[HAN_DATABASE_URL]")
def status(job_id, wait, fmt, database_url):
    """Progress and results of a job.

    Example: python -m cli status 3f2c...
    """
    settings = settings_from(database_url=database_url)
    report = job_report(settings, job_id)  # an unknown job is an error before waiting
    if wait and report["status"] == "submitting":
        raise UserError(f"job {job_id} is still submitting (or its submit was interrupted): submit the same "
                        f"file again, or: python -m cli resume {job_id}")
    if wait:
        wait_for_job(settings, job_id)
    show_job(settings, job_id, fmt)


@cli.command()
@click.argument("job_id")
@click.option("--retry-failed", is_flag=True, help="also classify again the posts that failed")
@click.option("--wait", is_flag=True, help="show progress until the job is done")
@click.option("--database-url", help="[HAN_DATABASE_URL]")
def resume(job_id, retry_failed, wait, database_url):
    """Enqueue a job's unfinished posts again: after a crash while submitting, a lost queue, or
    (with --retry-failed) a fixed checkpoint. Posts already classified are never classified twice.

    Example: python -m cli resume 3f2c... --wait
    """
    from worker.submit import SubmitError, resume_job

    settings = settings_from(database_url=database_url)
    try:
        batches, status = resume_job(settings, job_id, retry_failed=retry_failed)
    except SubmitError as exc:
        raise UserError(str(exc)) from None
    console.print(f"job {job_id}: {batches} batches queued, status {status}", highlight=False)
    if wait:
        wait_for_job(settings, job_id)
        sys.exit(3 if show_job(settings, job_id)["failed"] else 0)


@cli.command("export-posts")
@click.option("--split", type=click.Choice(["train", "test"]), default="test", show_default=True)
@click.option("--protocol", type=click.Choice(["seed", "sklearn"]), default="seed", show_default=True)
@click.option("--stripped", is_flag=True, help="write the text stripped by --protocol (default: the raw post)")
@click.option("--limit", type=int, default=0, help="only the first N posts (0: all)")
@click.option("--data", type=click.Path(), help="20news-bydate archive or folder [HAN_DATA]")
def export_posts(split, protocol, stripped, limit, data):
    """Write corpus posts as JSON lines with their labels, ready for submit.

    Posts are written raw, as the list carried them: the model strips headers, quotes and
    signature itself, exactly as it did in training.

    Example: python -m cli export-posts --split test > posts.jsonl
    """
    import json as _json
    from pathlib import Path

    from trainer.data import DataError, load_corpus

    settings = settings_from(data=Path(data) if data else None)
    try:
        corpus = load_corpus(settings.data, protocol)
    except DataError as exc:
        raise UserError(str(exc)) from None
    part = getattr(corpus, split)
    count = len(part) if not limit else min(limit, len(part))
    out = click.get_text_stream("stdout")
    for i in range(count):
        out.write(_json.dumps({"id": part.ids[i], "text": part.texts[i] if stripped else part.raw[i],
                               "label": corpus.label_names[part.labels[i]]}) + "\n")


@cli.command()
@output_format
@click.option("--database-url", help="[HAN_DATABASE_URL]")
def models(fmt, database_url):
    """List registered versions: test accuracy and macro F1 of the HAN beside the TF-IDF baselines
    trained in the same run.

    Example: python -m cli models --format csv
    """
    import pandas as pd

    from db import queries

    settings = settings_from(database_url=database_url)
    with open_session(settings) as session:
        frame = pd.DataFrame(queries.version_table(session))
    if frame.empty:
        raise UserError("no model versions yet; train one with: python -m cli train --preset small")
    print_frame(frame, fmt, title="model versions (test split; baselines: TF-IDF of the same run)")


def emit(sections: dict, fmt: str, heading: str | None = None):
    """Print named tables (pandas frames) and values: rich tables, CSV sections or one JSON object."""
    import json as _json

    import pandas as pd

    if fmt == "json":
        click.echo(_json.dumps(json_safe({name: (v.to_dict(orient="records") if isinstance(v, pd.DataFrame) else v)
                                          for name, v in sections.items()}), indent=1, default=str))
        return
    if heading and fmt == "table":
        console.print(heading, highlight=False)
    for name, value in sections.items():
        if isinstance(value, pd.DataFrame):
            if fmt == "csv":
                click.echo(f"# {name}")
            print_frame(value, fmt, title=name.replace("_", " "))
        elif fmt == "table":
            console.print(f"{name.replace('_', ' ')}: {value:.4f}" if isinstance(value, float) else
                          f"{name.replace('_', ' ')}: {value}", highlight=False)
        else:
            click.echo(f"# {name}: {value}")


def selection_options(function):
    for option in reversed([
        click.option("--since", metavar="vN", help="versions >= vN"),
        click.option("--until", metavar="vN", help="versions <= vN"),
        click.option("--model", metavar="vN", help="only version vN"),
        click.option("--job", help="only this job"),
        click.option("--label", metavar="GROUP", help="only posts whose true group is GROUP"),
        click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
                     show_default=True),
        click.option("--plot", type=click.Path(), help="also draw a picture into this PNG file"),
        click.option("--database-url", help="[HAN_DATABASE_URL]"),
    ]):
        function = option(function)
    return function


def check_output(path, suffix: str | None = None):
    """A file we are about to write: its folder must exist, it must not be a folder."""
    if path is None:
        return
    from pathlib import Path

    target = Path(path)
    if suffix and target.suffix.lower() != suffix:
        raise UserError(f"{path}: the file name must end in {suffix}")
    if target.is_dir():
        raise UserError(f"{path}: is a directory")
    if not target.parent.is_dir():
        raise UserError(f"{path}: folder {target.parent} does not exist")


def analysis_session(database_url):
    return open_session(settings_from(database_url=database_url))


def make_selection(since, until, model, job, label):
    from db.analysis import Selection

    return Selection(since=parse_version_option(since), until=parse_version_option(until),
                     model=parse_version_option(model), job=job, label=label)


def run_analysis(database_url, compute):
    """compute(session) inside a session; an AnalysisError is a user's error."""
    from db.analysis import AnalysisError

    try:
        with analysis_session(database_url) as session:
            return compute(session)
    except AnalysisError as exc:
        raise UserError(str(exc)) from None


@cli.group()
def analyze():
    """Analyses over stored predictions of posts with known labels."""


@analyze.command()
@click.option("--by-group", is_flag=True, help="also each failure mode's error rates within each group (80 rows)")
@selection_options
def failures(by_group, since, until, model, job, label, fmt, plot, database_url):
    """Failure modes among incorrect and correct predictions, whether each predicts errors (error
    rate flagged vs unflagged, overall and, with --by-group, per group), and attention statistics
    of each outcome.

    Example: python -m cli analyze failures --since v3 --by-group
    """
    check_output(plot, ".png")
    from db import analysis

    selection = make_selection(since, until, model, job, label)
    frame = run_analysis(database_url, lambda s: analysis.select_stats(s, selection))
    n_inc, n_cor = int((frame["correct"] == 0).sum()), int((frame["correct"] == 1).sum())
    sections = {"selection": selection.describe(), "incorrect": n_inc, "correct": n_cor,
                "failure_modes": analysis.failure_table(frame)}
    if by_group:
        sections["failure_modes_by_group"] = analysis.flag_lift_by_group(frame)
    sections["attention"] = analysis.attention_by_outcome(frame)
    emit(sections, fmt)
    if plot:
        from han.plots import outcome_histograms_png

        outcome_histograms_png(frame, ["word_max_mean", "sent_entropy", "num_sentences", "word_entropy"], plot,
                               title=f"failure-mode statistics, correct vs incorrect ({selection.describe()})")


@analyze.command()
@click.option("--top", default=15, show_default=True, help="most confused pairs to show")
@selection_options
def errors(top, since, until, model, job, label, fmt, plot, database_url):
    """Per-group precision, recall, F1 and support (sorted by F1), the confusion matrix and the most
    confused pairs. --plot draws the confusion matrix.

    Example: python -m cli analyze errors --model v2 --format csv
    """
    check_output(plot, ".png")
    from db import analysis

    selection = make_selection(since, until, model, job, label)
    frame = run_analysis(database_url, lambda s: analysis.select_stats(s, selection))
    matrix = analysis.confusion(frame)
    sections = {"selection": selection.describe(), **analysis.summary_metrics(frame),
                "per_group": analysis.per_group_metrics(frame), "confused_pairs": analysis.confused_pairs(frame, top)}
    if fmt != "table":  # 20 x 20 counts do not fit a terminal; --plot draws them
        sections["confusion_matrix"] = matrix.reset_index()
    emit(sections, fmt)
    if plot:
        from han.plots import confusion_png

        confusion_png(matrix, plot, title=f"confusion matrix ({selection.describe()})")


@analyze.command()
@selection_options
def attention(since, until, model, job, label, fmt, plot, database_url):
    """Distribution of each attention statistic for correct vs incorrect predictions, and how much
    weight the gate gives the cross-attention path. --plot draws the histograms.

    Example: python -m cli analyze attention --since v1 --plot attention.png
    """
    check_output(plot, ".png")
    from db import analysis

    selection = make_selection(since, until, model, job, label)
    frame = run_analysis(database_url, lambda s: analysis.select_stats(s, selection))
    gate = frame["gate_mean"].astype(float)
    emit({"selection": selection.describe(), "predictions": len(frame),
          "cross_path_weight_mean": float(gate.mean()), "cross_path_weight_std": float(gate.std()) if len(gate) > 1 else 0.0,
          "distribution": analysis.attention_distribution(frame),
          "correct_vs_incorrect": analysis.attention_by_outcome(frame)}, fmt)
    if plot:
        from han.plots import outcome_histograms_png

        outcome_histograms_png(frame, ["word_entropy", "sent_entropy", "gate_mean", "word_max"], plot,
                               title=f"attention statistics, correct vs incorrect ({selection.describe()})")


@analyze.command()
@click.argument("version_a", metavar="vA")
@click.argument("version_b", metavar="vB")
@click.option("--job", help="only posts of this job")
@click.option("--label", metavar="GROUP", help="only posts whose true group is GROUP")
@click.option("--show", default=20, show_default=True, help="flipped posts to list in each direction")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--plot", type=click.Path(), help="draw failure-mode rates of both versions into this PNG")
@click.option("--database-url", help="[HAN_DATABASE_URL]")
def compare(version_a, version_b, job, label, show, fmt, plot, database_url):
    """Compare two versions on the labelled posts both have classified (matched by post id): metric
    deltas, posts whose prediction flipped, and shifts in failure-mode rates.

    Example: python -m cli analyze compare v1 v2
    """
    check_output(plot, ".png")
    from db import analysis

    a, b = parse_version_option(version_a), parse_version_option(version_b)

    def compute(session):
        analysis.check_versions(session, a, b)
        return analysis.compare_versions(session, a, b, job=job, label=label)

    result = run_analysis(database_url, compute)
    emit({"posts_in_common": result["posts"], "metrics": result["metrics"],
          "right_to_wrong_count": len(result["right_to_wrong"]), "wrong_to_right_count": len(result["wrong_to_right"]),
          "right_to_wrong": result["right_to_wrong"].head(show), "wrong_to_right": result["wrong_to_right"].head(show),
          "failure_shifts": result["failure_shifts"]}, fmt)
    if plot:
        import matplotlib.pyplot as plt
        import numpy as np

        from han.plots import save

        shifts = result["failure_shifts"]
        fig, ax = plt.subplots(figsize=(10, 5))
        x = np.arange(len(shifts))
        ax.bar(x - 0.2, shifts[f"v{a}_rate"], 0.4, label=f"v{a}")
        ax.bar(x + 0.2, shifts[f"v{b}_rate"], 0.4, label=f"v{b}")
        ax.set_xticks(x, shifts["failure_mode"], rotation=15)
        ax.set_ylabel("share of posts flagged")
        ax.set_title(f"failure-mode rates, v{a} vs v{b} ({result['posts']} posts)")
        ax.legend()
        save(fig, plot)


@cli.command()
@click.argument("post_id")
@click.option("--model", metavar="vN", help="model version (default: the version that classified it, else newest)")
@click.option("--job", help="the job the post came in (when the same id was submitted more than once)")
@click.option("--html", "html_file", type=click.Path(), help="also write the highlighted post as an HTML page")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--database-url", help="[HAN_DATABASE_URL]")
def explain(post_id, model, job, html_file, fmt, database_url):
    """Show where the model looked in one stored post: sentences and words shaded by attention,
    the prediction, the top-3 probabilities and the failure flags, recomputed with the checkpoint.

    Example: python -m cli explain test/sci.med/59225 --html post.html
    """
    check_output(html_file)
    import json as _json

    from db import queries
    from db.analysis import AnalysisError
    from han.checkpoint import CheckpointError
    from han.explain import explanation_html, explanation_text
    from worker.service import model_for

    settings = settings_from(database_url=database_url)
    try:
        with open_session(settings) as session:
            post = queries.find_post(session, external_id=post_id, job_id=job)
            version = queries.get_version(session, version=parse_version_option(model) or post["version"]).version
        loaded = model_for(settings, version)
    except (LookupError, AnalysisError, CheckpointError, ValueError) as exc:
        raise UserError(str(exc)) from None
    from han.inference import explain_text

    result = explain_text(loaded, post["text"])
    result.update({"post_id": post_id, "job": post["job_id"], "model": f"v{version}", "true_label": post["true_label"]})
    if html_file:
        with open(html_file, "w", encoding="utf-8") as f:
            f.write(explanation_html(result))
    if fmt == "json":
        click.echo(_json.dumps(result, indent=1))
    else:
        console.print(explanation_text(result))


@cli.command()
@click.argument("out_dir", type=click.Path())
@click.option("--since", metavar="vN", help="versions >= vN")
@click.option("--until", metavar="vN", help="versions <= vN")
@click.option("--model", metavar="vN", help="only version vN")
@click.option("--job", help="only this job")
@click.option("--label", metavar="GROUP", help="only posts whose true group is GROUP")
@click.option("--database-url", help="[HAN_DATABASE_URL]")
def report(out_dir, since, until, model, job, label, database_url):
    """Write the reference's error-analysis files from the database into OUT_DIR.

    Example: python -m cli report --since v1 report/
    """
    from pathlib import Path

    from db.report import write_analysis_report

    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise UserError(f"{out_dir}: exists and is not a folder")
    if not Path(out_dir).resolve().parent.is_dir():
        raise UserError(f"{out_dir}: folder {Path(out_dir).resolve().parent} does not exist")

    selection = make_selection(since, until, model, job, label)
    paths = run_analysis(database_url, lambda s: write_analysis_report(s, selection, out_dir))
    for path in paths:
        console.print(str(path), highlight=False)


@cli.command()
@click.argument("query")
@click.option("-p", "--param", "params", nargs=2, multiple=True, metavar="NAME VALUE",
              help="bind :NAME to VALUE (numbers are passed as numbers)")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--database-url", help="[HAN_DATABASE_URL]")
def sql(query, params, fmt, database_url):
    """Run one read-only, parameterised query and print its rows. Writes are refused.

    Example: python -m cli sql "SELECT true_label, AVG(correct) FROM attention_stats
    WHERE version = :v GROUP BY true_label" -p v 1
    """
    import pandas as pd

    from db.readonly import ReadOnlyError, run_read_only

    settings = settings_from(database_url=database_url)
    try:
        columns, rows = run_read_only(settings.database_url, query, dict(params))
    except ReadOnlyError as exc:
        raise UserError(str(exc)) from None
    print_frame(pd.DataFrame(rows, columns=columns), fmt)


@cli.group()
def broker():
    """The embedded Redis broker (used when HAN_BROKER_URL is not set)."""


@broker.command("start")
def broker_start():
    """Start the embedded Redis (workers and submit also start it when needed)."""
    from worker.broker import ensure_embedded_broker

    console.print(f"embedded Redis on {ensure_embedded_broker(settings_from())}", highlight=False)


@broker.command("stop")
def broker_stop():
    """Stop the embedded Redis."""
    from worker.broker import stop_embedded_broker

    console.print("stopped" if stop_embedded_broker(settings_from()) else "not running")


@cli.group()
def db():
    """Database migrations."""


@db.command("upgrade")
@click.option("--database-url", help="[HAN_DATABASE_URL]")
def db_upgrade(database_url):
    """Migrate the database to the newest schema (alembic upgrade head)."""
    from db.session import upgrade
    from han.settings import mask_url

    settings = settings_from(database_url=database_url)
    upgrade(settings.database_url)
    console.print(f"{mask_url(settings.database_url)}: at the newest schema", highlight=False)


def main():
    """Run the CLI: usage mistakes exit 1 (2 and 3 are submit's answers), and a database that cannot
    be reached or has no schema is one line, not a traceback."""
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    try:
        cli.main(prog_name="python -m cli", standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("aborted", highlight=False)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(1)
    except SettingsError as exc:
        UserError(str(exc)).show()
        sys.exit(1)
    except (ArgumentError, NoSuchModuleError) as exc:
        UserError(f"bad database URL ({str(exc).splitlines()[0]})").show()
        sys.exit(1)
    except OSError as exc:  # a file or folder named by a setting that cannot be read or written
        UserError(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)).show()
        sys.exit(1)
    except DBAPIError as exc:
        detail = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc).splitlines()[0]
        hint = "; migrate it with: python -m cli db upgrade" if ("no such table" in detail or
                                                                 "does not exist" in detail) else ""
        UserError(f"database error: {detail}{hint}").show()
        sys.exit(1)
