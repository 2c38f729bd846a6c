"""Submit a JSON-lines file as a job: validate, store the posts, enqueue one task per batch of ids.

The job and all its posts are stored in one transaction; the job is marked `queued` only after
every batch is enqueued, so a crash while submitting never leaves a job that looks complete.
A job remembers the sha256 of the file it came from: submitting the same file to the same version
again resumes that job (enqueues what is unfinished) instead of storing the posts twice.

    result = submit_file(settings, "posts.jsonl", version=None, batch_size=128)
    result.job_id, result.accepted, result.rejects, result.resumed
    resume_job(settings, job_id)      # re-enqueue a job's unfinished posts (a lost queue, a crash)
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

from db import queries
from db.session import session_scope, upgrade
from han.checkpoint import file_sha256
from han.settings import Settings
from worker.intake import Reject, read_posts


class SubmitError(Exception):
    pass


@dataclass
class SubmitResult:
    job_id: str | None
    version: int
    accepted: int
    rejects: list[Reject]
    batches: int
    resumed: bool = False  # the same file was submitted before: its job was resumed
    status: str = "queued"


def label_names_of(path: str) -> list[str]:
    try:
        return json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))["label_names"]
    except (OSError, ValueError, KeyError) as exc:
        raise SubmitError(f"checkpoint {Path(path).name}: cannot read its config.json ({exc})") from None


def submit_file(settings: Settings, path, *, version: int | None = None, batch_size: int = 128,
                new_job: bool = False) -> SubmitResult:
    if batch_size < 1:
        raise SubmitError(f"--batch-size must be at least 1, not {batch_size}")
    upgrade(settings.database_url)
    with session_scope(settings.database_url) as session:
        model = queries.get_version(session, version=version)
        version, model_path = model.version, model.path
    posts, rejects = read_posts(path, label_names_of(model_path))
    if not posts:
        return SubmitResult(None, version, 0, rejects, 0)
    digest = file_sha256(path)
    with session_scope(settings.database_url) as session:
        earlier = queries.job_for_source(session, source_sha256=digest, version=version) if not new_job else None
        job_id = earlier.id if earlier else str(uuid.uuid4())
        if earlier is None:
            queries.create_job(session, job_id=job_id, model_version=version, source=str(path),
                               batch_size=batch_size, posts=posts, rejected_lines=len(rejects),
                               source_sha256=digest)
    batches, status = enqueue_unfinished(settings, job_id, batch_size)
    return SubmitResult(job_id, version, len(posts), rejects, batches, resumed=earlier is not None, status=status)


def enqueue_unfinished(settings: Settings, job_id: str, batch_size: int | None = None) -> tuple[int, str]:
    """Enqueue one task per batch of the job's unfinished posts, then mark it queued; (batches, status)."""
    with session_scope(settings.database_url) as session:
        job = queries.get_job(session, job_id=job_id)
        if job is None:
            raise SubmitError(f"no job {job_id!r}")
        post_ids, version = queries.unfinished_post_ids(session, job=job), job.model_version
        batch_size = batch_size or job.batch_size
    if post_ids:
        from kombu.exceptions import OperationalError

        from han.settings import mask_url
        from worker.broker import broker_url
        from worker.tasks import classify_batch

        broker_url(settings)  # starts the embedded Redis when no broker is configured
        try:
            for start in range(0, len(post_ids), batch_size):
                classify_batch.apply_async(args=[job_id, post_ids[start:start + batch_size], version],
                                           retry_policy={"max_retries": 3})
        except OperationalError as exc:
            raise SubmitError(f"cannot reach the broker {mask_url(settings.broker_url)} ({exc}); job {job_id} "
                              f"is stored: start the broker, then run: python -m cli resume {job_id}") from None
    with session_scope(settings.database_url) as session:
        queries.mark_job_queued(session, job_id=job_id)
        queries.finish_job_if_complete(session, job_id=job_id)
        status = queries.get_job(session, job_id=job_id).status
    return (len(post_ids) + batch_size - 1) // batch_size, status


def resume_job(settings: Settings, job_id: str, *, retry_failed: bool = False) -> tuple[int, str]:
    """Re-enqueue a job's unfinished posts (after a lost queue or a crash while submitting);
    with `retry_failed`, posts that failed are tried again too."""
    upgrade(settings.database_url)
    if retry_failed:
        with session_scope(settings.database_url) as session:
            job = queries.get_job(session, job_id=job_id)
            if job is None:
                raise SubmitError(f"no job {job_id!r}")
            queries.clear_failures(session, job=job)
    return enqueue_unfinished(settings, job_id)
