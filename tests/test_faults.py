"""Faults injected for real: killed workers, redelivered batches, poison posts, a restarted Redis,
a locked database, an interrupted submit, a tampered checkpoint. Real processes throughout."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import PYTHON, ROOT, han_env, register_copy, run_cli

VISIBILITY = "4"  # seconds before a dead worker's batch is delivered again


def wait_until(predicate, timeout=120, every=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


class Db:
    def __init__(self, url):
        self.engine = create_engine(url)

    def scalar(self, sql, **params):
        with self.engine.connect() as c:
            return c.execute(text(sql), params).scalar()

    def predictions(self):
        return self.scalar("SELECT COUNT(*) FROM predictions")

    def distinct_posts(self):
        return self.scalar("SELECT COUNT(DISTINCT post_id) FROM predictions")

    def job_status(self):
        return self.scalar("SELECT status FROM jobs ORDER BY created_at DESC LIMIT 1")


def posts_file(env, path, n):
    lines = run_cli("export-posts", "--split", "test", env=env, check=True).stdout.splitlines()
    path.write_text("\n".join(lines[::len(lines) // n][:n]) + "\n")
    return path


@pytest.fixture
def setup(tiny_model, sqlite_url, redis_url, tmp_path):
    checkpoints, _, _ = tiny_model
    register_copy(sqlite_url, checkpoints)
    env = han_env(tmp_path, sqlite_url, checkpoints, broker_url=redis_url, HAN_VISIBILITY_TIMEOUT=VISIBILITY)
    return env, Db(sqlite_url), checkpoints


def submit_in_background(env, path, *args):
    return subprocess.Popen([PYTHON, "-m", "cli", "submit", str(path), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_worker_killed_mid_batch_then_restarted(setup, start_worker, tmp_path):
    env, db, _ = setup
    path = posts_file(env, tmp_path / "p.jsonl", 1500)
    worker = start_worker(env)
    run_cli("submit", str(path), "--batch-size", "100", env=env, check=True)
    wait_until(lambda: db.predictions() >= 100, what="the first batch")
    os.killpg(worker.process.pid, signal.SIGKILL)  # the worker and its pool child, mid-way
    worker.process.wait()
    killed_at = db.predictions()
    assert killed_at < 1500 and killed_at % 100 == 0  # whole batches only
    start_worker(env)
    wait_until(lambda: db.job_status() == "done", timeout=120, what="the job to finish after a restart")
    assert db.predictions() == db.distinct_posts() == 1500


def test_sigterm_finishes_the_batch_before_exiting(setup, start_worker, tmp_path):
    env, db, _ = setup
    path = posts_file(env, tmp_path / "p.jsonl", 300)
    worker = start_worker(env)
    run_cli("submit", str(path), "--batch-size", "100", env=env, check=True)
    wait_until(lambda: db.predictions() >= 1, what="the first prediction")
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(timeout=60) == 0
    assert db.predictions() % 100 == 0 and db.predictions() >= 100  # the batch in hand was finished
    start_worker(env)
    wait_until(lambda: db.job_status() == "done", what="the job to finish")
    assert db.predictions() == db.distinct_posts() == 300


def test_batches_delivered_twice_write_once(setup, start_worker, tmp_path):
    env, db, _ = setup
    path = posts_file(env, tmp_path / "p.jsonl", 120)
    run_cli("submit", str(path), "--batch-size", "30", env=env, check=True)
    # every batch a second time, as a redelivery would
    code = ("import sys, json; from sqlalchemy import create_engine, text; from worker.tasks import classify_batch\n"
            "e = create_engine(sys.argv[1]); rows = e.connect().execute(text('SELECT id, job_id FROM posts ORDER BY id')).all()\n"
            "ids = [r[0] for r in rows]\n"
            "for i in range(0, len(ids), 30): classify_batch.apply_async(args=[rows[0][1], ids[i:i + 30], 1])\n")
    subprocess.run([PYTHON, "-c", code, str(db.engine.url)], cwd=ROOT, env=env, check=True, timeout=60)
    start_worker(env)
    start_worker(env)  # two workers race on the duplicates
    wait_until(lambda: db.job_status() == "done", what="the job")
    import redis

    client = redis.Redis.from_url(env["HAN_BROKER_URL"])
    wait_until(lambda: client.llen("gpu") == 0, what="the queue to drain")
    time.sleep(1.0)
    assert db.predictions() == db.distinct_posts() == 120
    assert db.scalar("SELECT COUNT(*) FROM attention_summaries") == 120
    status = json.loads(run_cli("status", db.scalar("SELECT id FROM jobs"), "--format", "json", env=env).stdout)
    assert (status["classified"], status["posts"], status["status"]) == (120, 120, "done")


def test_poison_post_is_marked_failed_and_the_rest_classified(setup, start_worker, tmp_path):
    env, db, _ = setup
    marker = "POISON-7f3a"
    path = posts_file(env, tmp_path / "p.jsonl", 20)
    lines = path.read_text().splitlines()
    bad = json.loads(lines[5])
    bad["text"] += f"\n{marker}\n"
    lines[5] = json.dumps(bad)
    path.write_text("\n".join(lines) + "\n")
    start_worker({**env, "HAN_INJECT_MODEL_FAULT": marker})
    result = run_cli("submit", str(path), "--batch-size", "10", "--wait", env=env)
    assert result.returncode == 3, result.stderr
    assert "classified: 19" in result.stdout and "failed: 1" in result.stdout
    assert f"{bad['id']}: RuntimeError: injected model fault" in result.stdout
    assert db.job_status() == "done"
    assert db.scalar("SELECT attempts FROM post_failures") == 3


def test_post_that_kills_its_worker_is_failed_after_bounded_deliveries(setup, start_worker, tmp_path):
    """A post whose classification kills the process (SIGKILL, as a native crash or the OOM killer
    would) cannot raise an exception; the batch is redelivered, goes post by post, and the post is
    marked failed after CRASH_LIMIT interrupted attempts. The worker's pool replaces its child."""
    from worker.service import CRASH_LIMIT

    env, db, _ = setup
    marker = "CRASH-91c2"
    path = posts_file(env, tmp_path / "p.jsonl", 20)
    lines = path.read_text().splitlines()
    bad = json.loads(lines[12])
    bad["text"] += f"\n{marker}\n"
    lines[12] = json.dumps(bad)
    path.write_text("\n".join(lines) + "\n")
    worker = start_worker({**env, "HAN_INJECT_MODEL_CRASH": marker})
    result = run_cli("submit", str(path), "--batch-size", "10", "--wait", env=env, timeout=240)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "classified: 19" in result.stdout and "failed: 1" in result.stdout
    assert f"{bad['id']}: classifying this post was interrupted {CRASH_LIMIT} times" in result.stdout
    assert db.predictions() == db.distinct_posts() == 19
    assert db.scalar("SELECT attempts FROM post_failures") == CRASH_LIMIT
    assert db.scalar("SELECT COUNT(*) FROM post_attempts") == 0  # nothing left in flight
    assert worker.process.poll() is None  # the worker itself lives on
    log = worker.log.read_text()
    assert log.count("exited with 'signal 9 (SIGKILL)'") == CRASH_LIMIT  # one death per attempt, no more


def start_redis(port, folder, *extra):
    folder.mkdir(exist_ok=True)
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
                                "--appendonly", "yes", "--appendfsync", "always", "--save", "", *extra],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: subprocess.run(["redis-cli", "-p", str(port), *(["-a", extra[1]] if extra else []), "ping"],
                                      capture_output=True, text=True).stdout.strip() == "PONG", timeout=20,
               what="redis-server")
    return process


def test_redis_restarted_while_a_job_runs(tiny_model, sqlite_url, start_worker, tmp_path):
    checkpoints, _, _ = tiny_model
    register_copy(sqlite_url, checkpoints)
    port = 6391
    redis_process = start_redis(port, tmp_path / "redis")
    env = han_env(tmp_path, sqlite_url, checkpoints, broker_url=f"redis://127.0.0.1:{port}/0",
                  HAN_VISIBILITY_TIMEOUT=VISIBILITY)
    db = Db(sqlite_url)
    path = posts_file(env, tmp_path / "p.jsonl", 300)
    try:
        submit = submit_in_background(env, path, "--batch-size", "10", "--wait")
        wait_until(lambda: db.job_status() in ("queued", "done"), what="the job to be queued")
        start_worker(env)
        wait_until(lambda: db.predictions() >= 30, what="some predictions")
        redis_process.terminate()  # a clean shutdown writes the append-only file
        redis_process.wait(timeout=20)
        time.sleep(2)
        redis_process = start_redis(port, tmp_path / "redis")
        out, err = submit.communicate(timeout=240)
        assert submit.returncode == 0, err
        assert "classified: 300" in out
        assert db.predictions() == db.distinct_posts() == 300
    finally:
        redis_process.terminate()
        redis_process.wait(timeout=20)


def test_locked_database_delays_but_loses_nothing(setup, start_worker, tmp_path):
    env, db, _ = setup
    path = posts_file(env, tmp_path / "p.jsonl", 200)
    run_cli("submit", str(path), "--batch-size", "50", env=env, check=True)
    lock = sqlite3.connect(db.engine.url.database, timeout=30)
    lock.execute("BEGIN EXCLUSIVE")  # nobody writes until this ends
    start_worker(env)
    time.sleep(6)
    lock.rollback()
    lock.close()
    assert db.predictions() == 0 or db.predictions() % 50 == 0
    wait_until(lambda: db.job_status() == "done", what="the job after the lock")
    assert db.predictions() == db.distinct_posts() == 200


def test_postgresql_refusing_connections_delays_but_loses_nothing(tiny_model, postgres_url, redis_url,
                                                                   start_worker, tmp_path):
    """The worker reaches PostgreSQL through a forwarder that the test cuts: connections are refused
    while the job's batches arrive; they retry with backoff and complete once it is restored."""
    from tests.proxy import TcpProxy

    checkpoints, _, _ = tiny_model
    register_copy(postgres_url, checkpoints)
    direct = han_env(tmp_path, postgres_url, checkpoints, broker_url=redis_url)
    db = Db(postgres_url)
    path = posts_file(direct, tmp_path / "p.jsonl", 200)
    proxy = TcpProxy(5432).start()
    try:
        through_proxy = postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        worker = start_worker(han_env(tmp_path, through_proxy, checkpoints, broker_url=redis_url))
        proxy.cut()  # refused from here on
        run_cli("submit", str(path), "--batch-size", "20", env=direct, check=True)
        wait_until(lambda: "Retry in" in worker.log.read_text(), timeout=60, what="a batch to be retried")
        time.sleep(4)
        assert db.predictions() == 0  # nothing written through a refused connection
        proxy.restore()
        wait_until(lambda: db.job_status() == "done", timeout=180, what="the job after the outage")
    finally:
        proxy.cut()
    assert db.predictions() == db.distinct_posts() == 200
    assert db.scalar("SELECT COUNT(*) FROM attention_summaries") == 200
    assert db.scalar("SELECT COUNT(*) FROM post_failures") == 0
    assert "OperationalError" in worker.log.read_text()


def test_interrupted_submit_is_resumed_without_duplicates(setup, start_worker, tmp_path):
    import redis

    env, db, _ = setup
    path = posts_file(env, tmp_path / "p.jsonl", 3000)
    queue = redis.Redis.from_url(env["HAN_BROKER_URL"])
    submit = submit_in_background(env, path, "--batch-size", "1")  # 3,000 messages to enqueue
    wait_until(lambda: queue.llen("gpu") > 0, every=0.02, what="the first batches to be enqueued")
    submit.kill()  # half way through enqueueing
    submit.wait()
    assert 0 < queue.llen("gpu") < 3000
    start_worker(env)
    job = db.scalar("SELECT id FROM jobs")
    assert db.job_status() == "submitting"  # never looks complete
    status = run_cli("status", job, env=env, check=True).stdout
    assert "submitting was interrupted" in status
    again = run_cli("submit", str(path), "--wait", env=env)
    assert again.returncode == 0, again.stderr
    assert f"job {job}: this file was submitted before; resumed" in again.stdout
    assert db.scalar("SELECT COUNT(*) FROM posts") == 3000 and db.scalar("SELECT COUNT(*) FROM jobs") == 1
    assert db.predictions() == db.distinct_posts() == 3000
    done = run_cli("submit", str(path), env=env, check=True).stdout
    assert "this file was submitted before; it is done" in done


def test_tampered_checkpoint_fails_the_batch_with_the_reason(setup, start_worker, tmp_path):
    env, db, checkpoints = setup
    weights = checkpoints / "v1" / "model.safetensors"
    original = weights.read_bytes()
    worker = start_worker(env)
    first = posts_file(env, tmp_path / "first.jsonl", 10)
    assert run_cli("submit", str(first), "--wait", env=env).returncode == 0  # the worker has loaded v1
    try:
        weights.write_bytes(original[:-16] + bytes(16))  # replaced under a worker that holds it in memory
        path = posts_file(env, tmp_path / "p.jsonl", 30)
        result = run_cli("submit", str(path), "--batch-size", "10", "--wait", env=env)
        assert result.returncode == 3
        assert "failed: 30" in result.stdout and "checkpoint v1: weights sha256" in result.stdout
        assert worker.process.poll() is None  # still serving, not crashing in a loop
    finally:
        weights.write_bytes(original)
    job = db.scalar("SELECT id FROM jobs ORDER BY created_at DESC LIMIT 1")
    retried = run_cli("resume", job, "--retry-failed", "--wait", env=env)
    assert retried.returncode == 0, retried.stderr
    assert db.predictions() == 40 and db.scalar("SELECT COUNT(*) FROM post_failures") == 0  # 10 + 30


def test_redis_password_works_and_is_never_printed(tiny_model, sqlite_url, start_worker, tmp_path):
    checkpoints, _, _ = tiny_model
    register_copy(sqlite_url, checkpoints)
    secret = "s3cret-Pa55"
    port = 6392
    redis_process = start_redis(port, tmp_path / "redis", "--requirepass", secret)
    try:
        env = han_env(tmp_path, sqlite_url, checkpoints, broker_url=f"redis://:{secret}@127.0.0.1:{port}/0")
        worker = start_worker(env)
        path = posts_file(env, tmp_path / "p.jsonl", 20)
        result = run_cli("submit", str(path), "--wait", env=env)
        assert result.returncode == 0 and "classified: 20" in result.stdout
        log = worker.log.read_text()
        assert "redis://:**@127.0.0.1" in log and secret not in log
        assert secret not in result.stdout + result.stderr
    finally:
        redis_process.terminate()
        redis_process.wait(timeout=20)


def test_rediss_broker_with_a_password_verifies_its_certificate(tiny_model, sqlite_url, start_worker, tmp_path):
    """A TLS Redis (its own test CA) with a password: the job completes over rediss://, the
    password is masked in the worker's log, and a broker certificate from an unknown CA is refused."""
    checkpoints, _, _ = tiny_model
    register_copy(sqlite_url, checkpoints)
    tls = tmp_path / "tls"
    tls.mkdir()
    openssl = lambda *args: subprocess.run(["openssl", *args], cwd=tls, check=True, capture_output=True)
    for name in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt",
                "-days", "2", "-subj", f"/CN={name}")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (tls / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "2", "-extfile", "ext")
    secret, port = "tls-S3cret", 6393
    redis_process = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--tls-cert-file", str(tls / "server.crt"), "--tls-key-file", str(tls / "server.key"),
         "--tls-ca-cert-file", str(tls / "ca.crt"), "--tls-auth-clients", "no", "--requirepass", secret],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: subprocess.run(["redis-cli", "--tls", "--cacert", str(tls / "ca.crt"), "-p", str(port),
                                           "--no-auth-warning", "-a", secret, "ping"],
                                          capture_output=True, text=True).stdout.strip() == "PONG",
                   timeout=20, what="the TLS redis-server")
        url = f"rediss://:{secret}@127.0.0.1:{port}/0"
        env = han_env(tmp_path, sqlite_url, checkpoints, broker_url=url, HAN_BROKER_CA=str(tls / "ca.crt"))
        worker = start_worker(env)
        path = posts_file(env, tmp_path / "p.jsonl", 20)
        result = run_cli("submit", str(path), "--wait", env=env)
        assert result.returncode == 0 and "classified: 20" in result.stdout, result.stdout + result.stderr
        log = worker.log.read_text()
        assert f"rediss://:**@127.0.0.1:{port}/0" in log and secret not in log
        assert secret not in result.stdout + result.stderr

        wrong = run_cli("submit", str(path), "--new-job", env={**env, "HAN_BROKER_CA": str(tls / "other-ca.crt")},
                        timeout=120)
        assert wrong.returncode != 0
        assert "certificate verify failed" in wrong.stderr and secret not in wrong.stdout + wrong.stderr
    finally:
        redis_process.terminate()
        redis_process.wait(timeout=20)


def test_pool_process_is_replaced_after_its_batch_limit(setup, start_worker, tmp_path):
    """HAN_WORKER_MAX_TASKS bounds what one pool process can accumulate: after that many batches a
    fresh process (which reloads the model) takes over, and nothing is lost or doubled."""
    env, db, _ = setup
    env = {**env, "HAN_WORKER_MAX_TASKS": "2"}
    path = posts_file(env, tmp_path / "p.jsonl", 60)
    worker = start_worker(env)
    run_cli("submit", str(path), "--batch-size", "10", env=env, check=True)
    pids = set()

    def finished():
        pids.update(Path(f"/proc/{worker.process.pid}/task/{worker.process.pid}/children").read_text().split())
        return db.job_status() == "done"
    wait_until(finished, what="the job")
    assert db.predictions() == db.distinct_posts() == 60
    assert worker.process.poll() is None  # the worker itself keeps running
    assert len(pids) >= 2, pids  # 6 batches, 2 per pool process: it was replaced (sampled, so at least 2 seen)
