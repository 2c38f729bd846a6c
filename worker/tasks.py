"""Celery tasks: thin wrappers that decode ids and call worker.service."""
from __future__ import annotations

from sqlalchemy.exc import IntegrityError, OperationalError

from han.settings import get_settings
from worker import service
from worker.app import app


@app.task(name="han.classify_batch", acks_late=True, autoretry_for=(OperationalError, IntegrityError),
          retry_backoff=2, retry_backoff_max=60, max_retries=10)
def classify_batch(job_id: str, post_ids: list[int], version: int) -> dict:
    """Classify the posts `post_ids` of job `job_id` with model `version`; idempotent."""
    return service.classify_batch(get_settings(), job_id=job_id, post_ids=[int(i) for i in post_ids],
                                  version=int(version))
