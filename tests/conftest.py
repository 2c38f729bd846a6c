"""Shared fixtures: the real corpus, a tiny model trained once, real databases, a real Redis.

The corpus comes from HAN_DATA or ../shared/data/20news-bydate.tar.gz. PostgreSQL (127.0.0.1:5432)
and Redis (127.0.0.1:6379) must be running; .ci/run starts them when they are not.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from db import queries
from db.session import dispose_engines, session_scope, upgrade
from han.checkpoint import WEIGHTS, file_sha256
from han.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("HAN_DATA") or ROOT.parent / "shared" / "data" / "20news-bydate.tar.gz")
PG_ADMIN_URL = os.environ.get("HAN_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("HAN_TEST_REDIS_URL", "redis://127.0.0.1:6379/7")
PYTHON = sys.executable


@pytest.fixture(scope="session")
def corpus_path() -> Path:
    assert DATA.exists(), f"the 20news-bydate archive is needed at {DATA} (or set HAN_DATA)"
    return DATA


def run_cli(*args, env=None, cwd=ROOT, timeout=300, check=False):
    """Run `python -m cli ...` as a user would; returns the CompletedProcess."""
    result = subprocess.run([PYTHON, "-m", "cli", *args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"cli {args} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def han_env(tmp: Path, database_url: str, checkpoint_dir: Path, broker_url: str | None = REDIS_URL, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAN_")}
    env.update({"HAN_DATABASE_URL": database_url, "HAN_CHECKPOINT_DIR": str(checkpoint_dir),
                "HAN_DATA": str(DATA), "HAN_HOME": str(tmp / "home"), "HAN_DEVICE": "cpu", **extra})
    if broker_url:
        env["HAN_BROKER_URL"] = broker_url
    return env


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, corpus_path):
    """A tiny HAN trained once on a slice of the real corpus: (checkpoint dir, sqlite url, train stdout)."""
    tmp = tmp_path_factory.mktemp("tiny")
    url = f"sqlite:///{tmp / 'registry.db'}"
    env = han_env(tmp, url, tmp / "checkpoints")
    result = run_cli("train", "--preset", "tiny", env=env, timeout=600, check=True)
    return tmp / "checkpoints", url, result.stdout


def register_copy(url: str, checkpoint_dir: Path, version: int = 1) -> None:
    """Register an existing checkpoint in another database (same path and sha256)."""
    import json

    path = checkpoint_dir / f"v{version}"
    metrics = json.loads((path / "metrics.json").read_text())
    upgrade(url)
    with session_scope(url) as session:
        queries.register_version(session, version=version, path=str(path), sha256=file_sha256(path / WEIGHTS),
                                 preset="tiny", protocol="seed", metrics=metrics, train_seconds=0.0)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'han.db'}"


@pytest.fixture
def postgres_url():
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    name = f"han_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    dispose_engines()
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'han.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def redis_url():
    """The local Redis, database 7, emptied before and after the test."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()


class WorkerProcess:
    """A real `celery -A worker worker -Q gpu` process."""

    def __init__(self, env, log: Path):
        self.log = log
        self.process = subprocess.Popen(
            [PYTHON, "-m", "celery", "-A", "worker", "worker", "-Q", "gpu", "-l", "info", "-c", "1",
             "-n", f"test-{uuid.uuid4().hex[:6]}@%h", "--without-mingle", "--without-gossip"],
            cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while "ready." not in log.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker did not start:\n{log.read_text()}")
            time.sleep(0.2)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def start_worker(tmp_path):
    workers = []

    def start(env) -> WorkerProcess:
        worker = WorkerProcess(env, tmp_path / f"worker{len(workers)}.log")
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
