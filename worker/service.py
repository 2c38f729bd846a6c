"""Classify one batch of stored posts and write the results: the plain function behind the task.

The model of each version loads once per process (cached) from the registry's path, its weights
checked against the registry's sha256. The batch re-reads its posts by id, skips posts that
already have a prediction for the version, and writes everything in one transaction.

    classify_batch(settings, job_id=job, post_ids=[1, 2, 3], version=2)
"""
from __future__ import annotations

import time

from db import queries
from db.session import session_scope
from han.checkpoint import LoadedModel, load_checkpoint
from han.inference import classify_texts
from han.settings import Settings, resolve_device

_models: dict[int, LoadedModel] = {}
_device: str | None = None


def model_for(settings: Settings, version: int) -> LoadedModel:
    global _device
    if version not in _models:
        with session_scope(settings.database_url) as session:
            row = queries.get_version(session, version=version)
            path, sha256 = row.path, row.sha256
        _device = _device or resolve_device(settings.device)
        loaded = load_checkpoint(path, expected_sha256=sha256)
        loaded.model.to(_device)
        _models[version] = loaded
    return _models[version]


def prediction_rows(loaded: LoadedModel, post_ids: list[int], results) -> list[dict]:
    rows = []
    for post_id, result in zip(post_ids, results):
        order = result.probabilities.argsort()[::-1][:3]
        rows.append({
            "post_id": post_id,
            "predicted_label": loaded.label_names[result.predicted],
            "confidence": float(result.probabilities[result.predicted]),
            "top3": [[loaded.label_names[i], round(float(result.probabilities[i]), 6)] for i in order],
            "summary": result.summary,
            "flags": result.flags,
        })
    return rows


def classify_batch(settings: Settings, *, job_id: str, post_ids: list[int], version: int,
                   micro_batch: int = 64) -> dict:
    started = time.perf_counter()
    with session_scope(settings.database_url) as session:
        todo = queries.missing_predictions(session, post_ids=post_ids, version=version)
        posts = queries.fetch_posts(session, post_ids=todo) if todo else []
    inserted = 0
    if posts:
        loaded = model_for(settings, version)
        results = classify_texts(loaded, [text for _, _, text in posts], device=_device, micro_batch=micro_batch)
        rows = prediction_rows(loaded, [post_id for post_id, _, _ in posts], results)
    with session_scope(settings.database_url) as session:
        if posts:
            inserted = queries.save_predictions(session, version=version, rows=rows)
        queries.finish_job_if_complete(session, job_id=job_id)
    return {"job_id": job_id, "version": version, "posts": len(post_ids), "classified": inserted,
            "skipped": len(post_ids) - inserted, "seconds": round(time.perf_counter() - started, 3)}
