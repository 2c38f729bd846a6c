"""Data access: small keyword-only functions that take the session as their first argument.

Writes of predictions are idempotent on (post, model version): a batch written twice leaves one
row per post, and job progress is counted from the rows themselves, never incremented.
"""
from __future__ import annotations

import json

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from db.models import (AttentionSummary, FailureFlags, Job, ModelVersion, Post, PostAttempt, PostFailure, Prediction,
                       utcnow)


class UnknownVersion(LookupError):
    pass


# --- model registry -------------------------------------------------------------------------

def register_version(session: Session, *, version: int, path: str, sha256: str, preset: str, protocol: str,
                     metrics: dict, train_seconds: float) -> ModelVersion:
    row = ModelVersion(version=version, path=path, sha256=sha256, preset=preset, protocol=protocol,
                       accuracy=metrics.get("accuracy"), weighted_f1=metrics.get("weighted_f1"),
                       macro_f1=metrics.get("macro_f1"), train_seconds=train_seconds,
                       metrics_json=json.dumps(metrics))
    session.add(row)
    session.flush()
    return row


def known_versions(session: Session) -> list[int]:
    return list(session.scalars(select(ModelVersion.version).order_by(ModelVersion.version)))


def version_table(session: Session) -> list[dict]:
    """One row per version: HAN test metrics beside the baselines stored with it."""
    rows = []
    for r in session.scalars(select(ModelVersion).order_by(ModelVersion.version)):
        metrics = json.loads(r.metrics_json or "{}")
        row = {"version": f"v{r.version}", "preset": r.preset, "protocol": r.protocol,
               "epochs": metrics.get("epochs_trained"),
               "train_s": None if r.train_seconds is None else round(r.train_seconds, 1),
               # test_posts: versions scored on different test slices (test_limit) do not compare
               "test_posts": metrics.get("test_posts"), "accuracy": r.accuracy, "macro_f1": r.macro_f1}
        for key, short in (("logistic_regression", "lr"), ("naive_bayes", "nb"), ("linear_svm", "svm")):
            baseline = metrics.get("baselines", {}).get(key, {})
            row[f"{short}_accuracy"] = baseline.get("accuracy")
            row[f"{short}_macro_f1"] = baseline.get("macro_f1")
        rows.append(row)
    return rows


def get_version(session: Session, *, version: int | None = None) -> ModelVersion:
    """The registry row of `version`, or of the newest version when None."""
    if version is None:
        row = session.scalars(select(ModelVersion).order_by(ModelVersion.version.desc()).limit(1)).first()
    else:
        row = session.get(ModelVersion, version)
    if row is None:
        known = ", ".join(f"v{v}" for v in known_versions(session)) or "none (train one with: python -m cli train)"
        wanted = f"v{version} in the registry" if version is not None else "model version in the registry yet"
        raise UnknownVersion(f"no {wanted}; known versions: {known}")
    return row


# --- jobs and posts -------------------------------------------------------------------------

def create_job(session: Session, *, job_id: str, model_version: int, source: str, batch_size: int,
               posts: list[dict], rejected_lines: int, source_sha256: str | None = None) -> Job:
    """A job with its posts ({"external_id", "line_no", "text", "true_label"}), in the caller's transaction."""
    job = Job(id=job_id, model_version=model_version, source=source, batch_size=batch_size,
              total_posts=len(posts), rejected_lines=rejected_lines, status="submitting",
              source_sha256=source_sha256)
    session.add(job)
    session.flush()
    session.execute(Post.__table__.insert(), [{"job_id": job_id, **post} for post in posts])
    return job


def job_post_ids(session: Session, *, job_id: str) -> list[int]:
    return list(session.scalars(select(Post.id).where(Post.job_id == job_id).order_by(Post.id)))


def mark_job_queued(session: Session, *, job_id: str) -> None:
    """Queued, unless already done; a done job whose posts were reopened goes back to queued."""
    job = session.get(Job, job_id)
    if job.status != "done" or job_done_count(session, job=job) < job.total_posts:
        job.status, job.finished_at = "queued", None


def clear_failures(session: Session, *, job: Job) -> int:
    """Forget the job's failed posts so they are classified again."""
    ids = job_post_ids(session, job_id=job.id)
    failures = session.scalars(select(PostFailure).where(PostFailure.post_id.in_(ids),
                                                         PostFailure.model_version == job.model_version)).all()
    for failure in failures:
        session.delete(failure)
    end_attempts(session, post_ids=ids, version=job.model_version)
    session.flush()
    return len(failures)


def get_job(session: Session, *, job_id: str) -> Job | None:
    return session.get(Job, job_id)


def job_for_source(session: Session, *, source_sha256: str, version: int) -> Job | None:
    """The newest job that submitted a file with this content to this version."""
    return session.scalars(select(Job).where(Job.source_sha256 == source_sha256, Job.model_version == version)
                           .order_by(Job.created_at.desc()).limit(1)).first()


def job_classified_count(session: Session, *, job: Job) -> int:
    return session.scalar(
        select(func.count(Prediction.id)).join(Post, Post.id == Prediction.post_id)
        .where(Post.job_id == job.id, Prediction.model_version == job.model_version)) or 0


def job_failures(session: Session, *, job: Job) -> list[tuple[str, str]]:
    """(post id as submitted, reason) of the job's posts its version could not classify."""
    rows = session.execute(
        select(Post.external_id, PostFailure.reason).join(PostFailure, PostFailure.post_id == Post.id)
        .where(Post.job_id == job.id, PostFailure.model_version == job.model_version).order_by(Post.id))
    return [(external_id, reason) for external_id, reason in rows]


def job_done_count(session: Session, *, job: Job) -> int:
    """Posts finished either way: classified, or failed with a reason."""
    failed = session.scalar(
        select(func.count(PostFailure.id)).join(Post, Post.id == PostFailure.post_id)
        .where(Post.job_id == job.id, PostFailure.model_version == job.model_version)) or 0
    return job_classified_count(session, job=job) + failed


def unfinished_post_ids(session: Session, *, job: Job) -> list[int]:
    """The job's posts with neither a prediction nor a failure for its version."""
    return missing_predictions(session, post_ids=job_post_ids(session, job_id=job.id), version=job.model_version)


def job_labelled_results(session: Session, *, job_id: str) -> list[tuple[str, str]]:
    """(true label, predicted label) of the job's labelled, classified posts."""
    rows = session.execute(
        select(Post.true_label, Prediction.predicted_label).join(Prediction, Prediction.post_id == Post.id)
        .join(Job, Job.id == Post.job_id)
        .where(Post.job_id == job_id, Prediction.model_version == Job.model_version, Post.true_label.is_not(None)))
    return [(t, p) for t, p in rows]


def find_post(session: Session, *, external_id: str, job_id: str | None = None) -> dict:
    """The newest stored post with this id (in `job_id` when given), with the newest version that
    classified it (None when none has yet)."""
    query = select(Post).where(Post.external_id == external_id)
    if job_id:
        query = query.where(Post.job_id == job_id)
    post = session.scalars(query.order_by(Post.id.desc()).limit(1)).first()
    if post is None:
        raise LookupError(f"no post {external_id!r}" + (f" in job {job_id}" if job_id else ""))
    version = session.scalar(select(func.max(Prediction.model_version)).where(Prediction.post_id == post.id))
    return {"id": post.id, "job_id": post.job_id, "text": post.text, "true_label": post.true_label,
            "version": version}


# --- the worker's reads and writes ----------------------------------------------------------

def fetch_posts(session: Session, *, post_ids: list[int]) -> list[tuple[int, str, str]]:
    """(post id, job id, text) of the given posts that still exist."""
    return [tuple(r) for r in session.execute(select(Post.id, Post.job_id, Post.text).where(Post.id.in_(post_ids)))]


def missing_predictions(session: Session, *, post_ids: list[int], version: int) -> list[int]:
    """Posts with neither a prediction nor a recorded failure for `version`."""
    done = set()
    for start in range(0, len(post_ids), 5000):  # keep IN lists short
        chunk = post_ids[start:start + 5000]
        done.update(session.scalars(select(Prediction.post_id).where(
            Prediction.post_id.in_(chunk), Prediction.model_version == version)))
        done.update(session.scalars(select(PostFailure.post_id).where(
            PostFailure.post_id.in_(chunk), PostFailure.model_version == version)))
    return [i for i in post_ids if i not in done]


def unfinished_attempts(session: Session, *, post_ids: list[int], version: int) -> dict[int, int]:
    """{post id: attempts} of the posts whose classification started and never finished."""
    found = {}
    for start in range(0, len(post_ids), 5000):
        chunk = post_ids[start:start + 5000]
        found.update(session.execute(select(PostAttempt.post_id, PostAttempt.attempts).where(
            PostAttempt.post_id.in_(chunk), PostAttempt.model_version == version)).all())
    return found


def start_attempts(session: Session, *, post_ids: list[int], version: int) -> None:
    """Count one more attempt for each post (commit it before classifying)."""
    known = unfinished_attempts(session, post_ids=post_ids, version=version)
    for attempt in session.scalars(select(PostAttempt).where(PostAttempt.post_id.in_(list(known)),
                                                             PostAttempt.model_version == version)):
        attempt.attempts += 1
    session.add_all(PostAttempt(post_id=p, model_version=version, attempts=1) for p in post_ids if p not in known)
    session.flush()


def end_attempts(session: Session, *, post_ids: list[int], version: int) -> None:
    for start in range(0, len(post_ids), 5000):
        session.execute(delete(PostAttempt).where(PostAttempt.post_id.in_(post_ids[start:start + 5000]),
                                                  PostAttempt.model_version == version))


def record_failures(session: Session, *, version: int, reasons: dict[int, str], attempts: int) -> int:
    """Mark posts failed for `version` (skipping any already finished); returns how many were marked."""
    new = set(missing_predictions(session, post_ids=list(reasons), version=version))
    for post_id in new:
        session.add(PostFailure(post_id=post_id, model_version=version, reason=reasons[post_id][:2000],
                                attempts=attempts))
    session.flush()
    return len(new)


def save_predictions(session: Session, *, version: int, rows: list[dict]) -> int:
    """Insert predictions with their summaries and flags; posts already predicted are skipped.

    rows: {"post_id", "predicted_label", "confidence", "top3", "summary", "flags"}. Returns the number
    inserted. The unique constraint on (post, version) guards against a concurrent duplicate.
    """
    new = set(missing_predictions(session, post_ids=[r["post_id"] for r in rows], version=version))
    inserted = 0
    for r in rows:
        if r["post_id"] not in new:
            continue
        s = r["summary"]
        prediction = Prediction(
            post_id=r["post_id"], model_version=version, predicted_label=r["predicted_label"],
            confidence=r["confidence"], top3_json=json.dumps(r["top3"]),
            summary=AttentionSummary(
                word_entropy=s["word_entropy"], word_max=s["word_max"], word_max_mean=s["word_max_mean"],
                sent_entropy=s["sent_entropy"], sent_max=s["sent_max"], gate_mean=s["gate_mean"],
                num_sentences=s["num_sentences"], num_words=s["num_words"],
                top_words_json=json.dumps(s["top_words"])),
            flags=FailureFlags(**r["flags"]))
        session.add(prediction)
        inserted += 1
    session.flush()
    return inserted


def finish_job_if_complete(session: Session, *, job_id: str) -> bool:
    job = session.get(Job, job_id)
    if job is None or job.status == "done":
        return False
    if job.status == "queued" and job_done_count(session, job=job) >= job.total_posts:
        job.status, job.finished_at = "done", utcnow()
        return True
    return False

