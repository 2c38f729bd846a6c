"""python -m cli: thin commands over the han, trainer, worker and db packages.

Each command parses its options, calls one library function and prints. A user's mistake gets a
clear message and exit status 1, never a traceback.
"""
from __future__ import annotations

import sys

import click
from rich.console import Console

from han.settings import get_settings

# lines are never wrapped (they may be grepped); tables get 160 columns in pipes and logs
console = Console(soft_wrap=True) if sys.stdout.isatty() else Console(width=160, soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)


class UserError(click.ClickException):
    """Printed as `error: ...`, exit status 1."""

    def show(self, file=None):
        errors.print(f"[red]error:[/red] {self.message}", highlight=False)


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

    from trainer.data import DataError
    from trainer.embeddings import EmbeddingError
    from trainer.presets import PresetError, preset
    from trainer.run_state import RunStateError
    from trainer.train import run_training

    settings = settings_from(data=Path(data) if data else None, device=device,
                             checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir else None,
                             database_url=database_url)
    if resume and (overrides or embeddings):
        raise UserError("--resume continues a run with its own settings; drop --set and --embeddings")
    try:
        config = preset(preset_name, [*overrides, *([f"embeddings={embeddings}"] if embeddings else [])])
        result = run_training(settings, config, console=errors, resume=parse_version_option(resume))
    except (PresetError, DataError, EmbeddingError, RunStateError, ValueError) as exc:
        raise UserError(str(exc)) from None
    except KeyboardInterrupt:
        raise UserError("interrupted before a checkpoint was written; a run that finished an epoch "
                        "continues with --resume vN") from None
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


def print_frame(frame, fmt: str, title: str | None = None, floats: str = "{:.4f}"):
    """A pandas frame as a rich table, CSV or JSON records on stdout."""
    import json as _json

    from rich.table import Table

    if fmt == "csv":
        click.echo(frame.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(_json.dumps(frame.to_dict(orient="records"), indent=1, default=str))
    else:
        table = Table(title=title, title_justify="left")
        for column in frame.columns:
            table.add_column(str(column), justify="left" if frame[column].dtype == object else "right")
        for record in frame.itertuples(index=False):
            table.add_row(*[floats.format(v) if isinstance(v, float) else ("" if v is None else str(v))
                            for v in record])
        console.print(table)


def parse_version_option(value):
    from han.checkpoint import parse_version

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
@click.option("--database-url", help="[HAN_DATABASE_URL]")
def submit(file, model, batch_size, wait, rejects_file, database_url):
    """Submit a JSON-lines file of posts for classification.

    Each line: {"id": ..., "text": ..., "label": optional group name}. Bad lines are reported with
    their line number and skipped; the rest go through. Exit status: 0 when every line was
    accepted, 2 when some lines were rejected, 1 on an error.

    Example: python -m cli submit posts.jsonl --wait
    """
    import json as _json

    from db.queries import UnknownVersion
    from worker.intake import IntakeError
    from worker.submit import SubmitError, submit_file

    settings = settings_from(database_url=database_url)
    try:
        result = submit_file(settings, file, version=parse_version_option(model), batch_size=batch_size)
    except (IntakeError, SubmitError, UnknownVersion) as exc:
        raise UserError(str(exc)) from None
    for r in result.rejects:
        errors.print(f"{r.path}:{r.line}: rejected: {r.reason}", highlight=False, markup=False)
    if rejects_file:
        with open(rejects_file, "w", encoding="utf-8") as f:
            for r in result.rejects:
                f.write(_json.dumps(r.to_json()) + "\n")
    if result.job_id is None:
        raise UserError(f"{file}: no valid posts to submit ({len(result.rejects)} lines rejected)")
    console.print(f"job {result.job_id}: {result.accepted} posts accepted, {len(result.rejects)} lines rejected, "
                  f"{result.batches} batches queued for v{result.version}", highlight=False)
    if wait:
        wait_for_job(settings, result.job_id)
        show_job(settings, result.job_id)
    sys.exit(2 if result.rejects else 0)


def wait_for_job(settings, job_id: str, poll: float = 0.5):
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from db import queries

    with Progress(TextColumn("classifying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[rate]}"), console=errors) as progress:
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
        done = queries.job_done_count(session, job=job)
        pairs = queries.job_labelled_results(session, job_id=job_id)
        report = {"job": job.id, "model": f"v{job.model_version}", "status": job.status, "source": job.source,
                  "posts": job.total_posts, "classified": done, "rejected_lines": job.rejected_lines,
                  "created_at": str(job.created_at), "finished_at": str(job.finished_at or "")}
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
        return
    for key, value in report.items():
        console.print(f"{key:>15}: {value:.4f}" if isinstance(value, float) else f"{key:>15}: {value}",
                      highlight=False)


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
    job_report(settings, job_id)  # an unknown job is an error before waiting
    if wait:
        wait_for_job(settings, job_id)
    show_job(settings, job_id, fmt)


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


@cli.group()
def analyze():
    """Analyses over stored predictions of posts with known labels."""


@analyze.command()
@click.option("--since", default="v1", show_default=True, metavar="vN", help="versions >= vN")
@output_format
@click.option("--database-url", help="[HAN_DATABASE_URL]")
def failures(since, fmt, database_url):
    """Failure modes among incorrect and correct predictions, and attention statistics of each.

    Example: python -m cli analyze failures --since v3
    """
    import json as _json

    from db import analysis, queries

    settings = settings_from(database_url=database_url)
    since_version = parse_version_option(since)
    with open_session(settings) as session:
        known = queries.known_versions(session)
        if since_version not in known and not any(v >= since_version for v in known):
            raise UserError(f"no versions >= v{since_version}; known versions: "
                            + (", ".join(f"v{v}" for v in known) or "none"))
        frame = analysis.labelled_stats(session, since=since_version)
    if frame.empty:
        raise UserError(f"no labelled predictions from versions >= v{since_version}")
    modes, stats = analysis.failure_modes(frame), analysis.attention_by_outcome(frame)
    n_inc, n_cor = int((frame["correct"] == 0).sum()), int((frame["correct"] == 1).sum())
    if fmt == "json":
        click.echo(_json.dumps({"since": f"v{since_version}", "incorrect": n_inc, "correct": n_cor,
                                "failure_modes": modes.to_dict(orient="records"),
                                "attention": stats.to_dict(orient="records")}, indent=1))
        return
    if fmt == "table":
        console.print(f"versions >= v{since_version}: {n_cor + n_inc} labelled predictions, "
                      f"{n_inc} incorrect, {n_cor} correct", highlight=False)
    print_frame(modes, fmt, title="failure modes")
    if fmt == "csv":
        click.echo()
    print_frame(stats, fmt, title="attention statistics: correct vs incorrect (mean, std)")


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
    cli(prog_name="python -m cli")
