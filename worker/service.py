"""Classify one batch of stored posts and write the results: the plain function behind the task.

The model of each version loads once per process (cached) from the registry's path, its weights
checked against the registry's sha256. The batch re-reads its posts by id, skips posts already
finished for the version, and writes everything in one transaction. What cannot be classified is
recorded, not retried forever:

- a checkpoint that is missing, tampered with or of an unknown format fails the whole batch,
  each post with that reason (the registry still names the version; fixing it and running
  `python -m cli resume JOB` retries them);
- a post that breaks the model path is retried alone (POST_ATTEMPTS times) and then marked failed
  with its reason, while the rest of its batch is classified;
- a post that kills its worker (a crash in native code, the kernel's OOM killer) cannot raise:
  every post's attempt is counted in `post_attempts` (committed) before it is classified and
  cleared with its result. A delivery that finds attempts left over from an earlier one knows that
  delivery died, so it goes post by post, committing each; a post whose classification was
  interrupted CRASH_LIMIT times is marked failed instead of being tried again. A batch is thus
  delivered at most CRASH_LIMIT + 1 times, whatever it contains.

Database errors propagate, so the task retries the batch with backoff.

    classify_batch(settings, job_id=job, post_ids=[1, 2, 3], version=2)
"""
from __future__ import annotations

import os
import signal
import time

from db import queries
from db.session import session_scope
from han.checkpoint import CONFIG, VOCAB, WEIGHTS, CheckpointError, LoadedModel, load_checkpoint
from han.inference import classify_texts
from han.settings import Settings, resolve_device

POST_ATTEMPTS = 2  # tries of a post alone, after its batch failed, before it is marked failed
CRASH_LIMIT = 3  # interrupted attempts of a post (its worker died) before it is marked failed
FAULT_MARKER_ENV = "HAN_INJECT_MODEL_FAULT"  # tests: a post containing this text breaks the model path
CRASH_MARKER_ENV = "HAN_INJECT_MODEL_CRASH"  # tests: a post containing this text kills the worker process

_models: dict[int, tuple[LoadedModel, tuple]] = {}  # version -> (model, stat of its files when loaded)
_device: str | None = None


def _file_stamp(path) -> tuple:
    """What changes when a checkpoint's files are replaced or rewritten (cheap: one stat per file)."""
    stamp = []
    for name in (WEIGHTS, CONFIG, VOCAB):
        try:
            st = os.stat(os.path.join(path, name))
            stamp.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            stamp.append(None)
    return tuple(stamp)


def model_for(settings: Settings, version: int) -> LoadedModel:
    """The version's model, loaded once per process and checked against the registry's sha256;
    loaded (and so checked) again when its files change on disk, so a checkpoint replaced or
    damaged after a worker loaded it fails its next batch instead of being served stale."""
    global _device
    cached = _models.get(version)
    if cached is not None and _file_stamp(cached[0].path) == cached[1]:
        return cached[0]
    _models.pop(version, None)
    with session_scope(settings.database_url) as session:
        row = queries.get_version(session, version=version)
        path, sha256 = row.path, row.sha256
    _device = _device or resolve_device(settings.device)
    stamp = _file_stamp(path)
    loaded = load_checkpoint(path, expected_sha256=sha256)
    loaded.model.to(_device)
    _models[version] = (loaded, stamp)
    return loaded


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


def _classify(loaded: LoadedModel, texts: list[str], micro_batch: int):
    marker = os.environ.get(FAULT_MARKER_ENV)
    if marker and any(marker in text for text in texts):
        raise RuntimeError(f"injected model fault ({FAULT_MARKER_ENV})")
    crash = os.environ.get(CRASH_MARKER_ENV)
    if crash and any(crash in text for text in texts):
        os.kill(os.getpid(), signal.SIGKILL)
    return classify_texts(loaded, texts, device=_device, micro_batch=micro_batch)


def _classify_one_by_one(loaded, posts, micro_batch) -> tuple[list[dict], dict[int, str]]:
    rows, failures = [], {}
    for post_id, _job, text in posts:
        for attempt in range(1, POST_ATTEMPTS + 1):
            try:
                rows += prediction_rows(loaded, [post_id], _classify(loaded, [text], micro_batch))
                break
            except Exception as exc:  # noqa: BLE001 - any failure of the model path is this post's reason
                if attempt == POST_ATTEMPTS:
                    failures[post_id] = f"{type(exc).__name__}: {exc}"
    return rows, failures


def classify_batch(settings: Settings, *, job_id: str, post_ids: list[int], version: int,
                   micro_batch: int = 64) -> dict:
    started = time.perf_counter()
    with session_scope(settings.database_url) as session:
        todo = queries.missing_predictions(session, post_ids=post_ids, version=version)
        posts = queries.fetch_posts(session, post_ids=todo) if todo else []
        interrupted = queries.unfinished_attempts(session, post_ids=todo, version=version) if todo else {}
    if interrupted:  # an earlier delivery died part-way: one post at a time
        inserted, failed = _classify_carefully(settings, posts, interrupted, version, micro_batch)
        with session_scope(settings.database_url) as session:
            queries.finish_job_if_complete(session, job_id=job_id)
        return _result(job_id, version, post_ids, inserted, failed, started)
    rows, failures, attempts = [], {}, 1
    if posts:
        try:
            loaded = model_for(settings, version)
        except CheckpointError as exc:
            loaded, failures = None, {post_id: str(exc) for post_id, _, _ in posts}
        if loaded is not None:
            with session_scope(settings.database_url) as session:
                queries.start_attempts(session, post_ids=todo, version=version)
            try:
                rows = prediction_rows(loaded, [p for p, _, _ in posts],
                                       _classify(loaded, [text for _, _, text in posts], micro_batch))
            except Exception:  # noqa: BLE001 - find the post that breaks it; the others go through
                rows, failures = _classify_one_by_one(loaded, posts, micro_batch)
                attempts = 1 + POST_ATTEMPTS
    with session_scope(settings.database_url) as session:  # one transaction for the whole batch
        inserted = queries.save_predictions(session, version=version, rows=rows) if rows else 0
        failed = queries.record_failures(session, version=version, reasons=failures, attempts=attempts) \
            if failures else 0
        if todo:
            queries.end_attempts(session, post_ids=todo, version=version)
        queries.finish_job_if_complete(session, job_id=job_id)
    return _result(job_id, version, post_ids, inserted, failed, started)


def _classify_carefully(settings, posts, interrupted: dict[int, int], version: int, micro_batch: int):
    """Each post in its own transaction, its attempt committed first; (inserted, failed)."""
    inserted = failed = 0
    loaded = None
    for post_id, _job, text in posts:
        tries = interrupted.get(post_id, 0)
        if tries >= CRASH_LIMIT:
            reason = (f"classifying this post was interrupted {tries} times (the worker process died, "
                      f"or its result could not be written)")
            rows, failures = [], {post_id: reason}
        else:
            try:
                loaded = loaded or model_for(settings, version)
            except CheckpointError as exc:
                rows, failures = [], {post_id: str(exc)}
            else:
                with session_scope(settings.database_url) as session:
                    queries.start_attempts(session, post_ids=[post_id], version=version)
                rows, failures = _classify_one_by_one(loaded, [(post_id, _job, text)], micro_batch)
        with session_scope(settings.database_url) as session:
            inserted += queries.save_predictions(session, version=version, rows=rows) if rows else 0
            failed += queries.record_failures(session, version=version, reasons=failures,
                                              attempts=max(tries, 1 + POST_ATTEMPTS)) if failures else 0
            queries.end_attempts(session, post_ids=[post_id], version=version)
    return inserted, failed


def _result(job_id, version, post_ids, inserted, failed, started) -> dict:
    return {"job_id": job_id, "version": version, "posts": len(post_ids), "classified": inserted, "failed": failed,
            "skipped": len(post_ids) - inserted - failed, "seconds": round(time.perf_counter() - started, 3)}
