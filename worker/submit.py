"""Submit a JSON-lines file as a job: validate, store the posts, enqueue one task per batch of ids.

The job and all its posts are stored in one transaction; the job is marked `queued` only after
every batch is enqueued, so a crash while submitting never leaves a job that looks complete.

    result = submit_file(settings, "posts.jsonl", version=None, batch_size=128)
    result.job_id, result.accepted, result.rejects
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

from db import queries
from db.session import session_scope, upgrade
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


def label_names_of(path: str) -> list[str]:
    return json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))["label_names"]


def submit_file(settings: Settings, path, *, version: int | None = None, batch_size: int = 128) -> SubmitResult:
    if batch_size < 1:
        raise SubmitError(f"--batch-size must be at least 1, not {batch_size}")
    upgrade(settings.database_url)
    with session_scope(settings.database_url) as session:
        model = queries.get_version(session, version=version)
        version, model_path = model.version, model.path
    posts, rejects = read_posts(path, label_names_of(model_path))
    if not posts:
        return SubmitResult(None, version, 0, rejects, 0)

    job_id = str(uuid.uuid4())
    with session_scope(settings.database_url) as session:
        queries.create_job(session, job_id=job_id, model_version=version, source=str(path),
                           batch_size=batch_size, posts=posts, rejected_lines=len(rejects))
    with session_scope(settings.database_url) as session:
        post_ids = queries.job_post_ids(session, job_id=job_id)

    from worker.tasks import classify_batch  # imports the Celery app (and starts the embedded broker)

    batches = [post_ids[i:i + batch_size] for i in range(0, len(post_ids), batch_size)]
    for batch in batches:
        classify_batch.apply_async(args=[job_id, batch, version])
    with session_scope(settings.database_url) as session:
        queries.mark_job_queued(session, job_id=job_id)
        queries.finish_job_if_complete(session, job_id=job_id)
    return SubmitResult(job_id, version, len(posts), rejects, len(batches))
