"""SQLAlchemy models: model registry, jobs, posts, predictions, attention summaries, failure flags.

One prediction per (post, model version), enforced by a unique constraint so a redelivered batch
cannot add rows. The `attention_stats` view (created by the migration, see db/views.py) joins
them into one row per prediction for plain SQL.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class ModelVersion(Base):
    __tablename__ = "model_versions"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)  # 3 for v3
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    preset: Mapped[str] = mapped_column(String(32))
    protocol: Mapped[str] = mapped_column(String(16))
    accuracy: Mapped[float | None] = mapped_column(Float)
    weighted_f1: Mapped[float | None] = mapped_column(Float)
    macro_f1: Mapped[float | None] = mapped_column(Float)
    train_seconds: Mapped[float | None] = mapped_column(Float)
    metrics_json: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    model_version: Mapped[int] = mapped_column(ForeignKey("model_versions.version"))
    source: Mapped[str] = mapped_column(Text)  # the submitted file
    source_sha256: Mapped[str | None] = mapped_column(String(64), index=True)  # its content, to resume
    batch_size: Mapped[int] = mapped_column(Integer)
    total_posts: Mapped[int] = mapped_column(Integer, default=0)
    rejected_lines: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="submitting")  # submitting, queued, done
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Post(Base):
    __tablename__ = "posts"
    __table_args__ = (UniqueConstraint("job_id", "external_id", name="uq_posts_job_external_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    external_id: Mapped[str] = mapped_column(String(256))  # the "id" of the submitted line
    line_no: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    true_label: Mapped[str | None] = mapped_column(String(64))


class Prediction(Base):
    __tablename__ = "predictions"
    __table_args__ = (UniqueConstraint("post_id", "model_version", name="uq_predictions_post_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), index=True)
    model_version: Mapped[int] = mapped_column(ForeignKey("model_versions.version"), index=True)
    predicted_label: Mapped[str] = mapped_column(String(64))
    confidence: Mapped[float] = mapped_column(Float)
    top3_json: Mapped[str] = mapped_column(Text)  # [[label, probability], ...]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    summary: Mapped["AttentionSummary"] = relationship(cascade="all, delete-orphan", uselist=False)
    flags: Mapped["FailureFlags"] = relationship(cascade="all, delete-orphan", uselist=False)


class AttentionSummary(Base):
    __tablename__ = "attention_summaries"

    prediction_id: Mapped[int] = mapped_column(ForeignKey("predictions.id", ondelete="CASCADE"), primary_key=True)
    word_entropy: Mapped[float] = mapped_column(Float)  # mean over real sentences of word-attention entropy
    word_max: Mapped[float] = mapped_column(Float)  # largest word weight of the post
    word_max_mean: Mapped[float] = mapped_column(Float)  # mean over sentences of the largest word weight
    sent_entropy: Mapped[float] = mapped_column(Float)  # entropy of sentence attention
    sent_max: Mapped[float] = mapped_column(Float)  # largest sentence weight
    gate_mean: Mapped[float] = mapped_column(Float)  # mean weight of the cross-attention path
    num_sentences: Mapped[int] = mapped_column(Integer)
    num_words: Mapped[int] = mapped_column(Integer)
    top_words_json: Mapped[str] = mapped_column(Text)  # [[word, weight], ...]


class FailureFlags(Base):
    __tablename__ = "failure_flags"

    prediction_id: Mapped[int] = mapped_column(ForeignKey("predictions.id", ondelete="CASCADE"), primary_key=True)
    word_over_concentration: Mapped[bool] = mapped_column(Boolean)
    diffuse_sentence_attention: Mapped[bool] = mapped_column(Boolean)
    short_document: Mapped[bool] = mapped_column(Boolean)
    high_word_entropy: Mapped[bool] = mapped_column(Boolean)


class PostAttempt(Base):
    """A post whose classification by a version started and has not finished: how many times.

    Written before a batch is classified and deleted with its results, so a row that outlives its
    batch means the worker died (or lost the database) while classifying it."""

    __tablename__ = "post_attempts"

    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True)
    model_version: Mapped[int] = mapped_column(ForeignKey("model_versions.version"), primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class PostFailure(Base):
    """A post that a version could not classify, with the reason; counts toward job completion."""

    __tablename__ = "post_failures"
    __table_args__ = (UniqueConstraint("post_id", "model_version", name="uq_post_failures_post_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
    model_version: Mapped[int] = mapped_column(ForeignKey("model_versions.version"))
    reason: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
