"""Memory soak: a real Celery worker classifies many batches; its pool process's resident memory
is read from /proc after every batch, and a straight line is fitted to the measured part.

The first `warmup` batches are classified and recorded but not fitted: oneDNN's primitive cache
fills there with the bounded set of LSTM shapes the worker meets (han.model.shape_bucket), and
the allocator settles. The slope is fitted over the `batches` batches after it.

    python -m bench soak --batches 500 --warmup 500 --batch-size 16
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine, text


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def pool_child(pid: int) -> int:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    if not children:
        raise RuntimeError("the worker has no pool process yet")
    return int(children[0])


def run_soak(batches: int, batch_size: int, data: str, warmup: int = 500, preset: str = "tiny") -> dict:
    root = Path(tempfile.mkdtemp(prefix="han-soak-"))
    env = {**os.environ, "HAN_DATABASE_URL": f"sqlite:///{root / 'soak.db'}", "HAN_CHECKPOINT_DIR": str(root / "ck"),
           "HAN_HOME": str(root / "home"), "HAN_DATA": data, "HAN_DEVICE": "cpu",
           "HAN_WORKER_MAX_TASKS": "0"}  # one pool process throughout: its own growth is what is measured
    cli = [sys.executable, "-m", "cli"]
    subprocess.run([*cli, "train", "--preset", preset], env=env, check=True, capture_output=True)
    exported = subprocess.run([*cli, "export-posts", "--split", "test"], env=env, check=True,
                              capture_output=True, text=True).stdout.splitlines()
    posts = root / "posts.jsonl"
    total = warmup + batches
    with open(posts, "w") as f:
        for i in range(total * batch_size):
            post = json.loads(exported[i % len(exported)])
            f.write(json.dumps({**post, "id": f"{post['id']}#{i}"}) + "\n")
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "worker", "worker", "-Q", "gpu", "-c", "1",
                               "-n", "soak@%h", "--loglevel", "warning"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    engine = create_engine(env["HAN_DATABASE_URL"])
    samples: dict[int, int] = {}
    try:
        time.sleep(3)
        subprocess.run([*cli, "submit", str(posts), "--batch-size", str(batch_size)], env=env, check=True,
                       capture_output=True)
        started = time.monotonic()
        done = 0
        while done < total and time.monotonic() - started < 3600:
            with engine.connect() as c:
                done = c.execute(text("SELECT COUNT(*) FROM predictions")).scalar() // batch_size
            if done and done not in samples:  # a batch that finished between two polls is not sampled
                samples[done] = rss_kib(pool_child(worker.pid))
            time.sleep(0.02)
        seconds = time.monotonic() - started
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        engine.dispose()
        subprocess.run([*cli, "broker", "stop"], env=env, capture_output=True)
    x = np.array(sorted(samples))
    y = np.array([samples[i] for i in x], dtype=float)
    steady = x > warmup
    slope = float(np.polyfit(x[steady], y[steady], 1)[0])
    warm = x <= warmup
    return {"batches": int(x.max()), "warmup": warmup, "batch_size": batch_size,
            "warmup_growth_kib": int(y[warm][-1] - y[0]) if warm.any() else 0, "seconds": seconds, "samples": samples,
            "first_kib": int(y[0]), "last_kib": int(y[-1]), "slope_kib_per_batch": slope,
            "steady_growth_kib": slope * (x[steady].max() - x[steady].min()),
            "noise_kib": float(np.std(y[steady] - np.polyval(np.polyfit(x[steady], y[steady], 1), x[steady])))}


def print_soak(result: dict) -> None:
    print(f"{'batch':>6} {'RSS MiB':>9}")
    for i, kib in sorted(result["samples"].items()):
        if i == 1 or i % max(1, result["batches"] // 20) == 0:
            print(f"{i:>6} {kib / 1024:>9.1f}")
    measured = result["batches"] - result["warmup"]
    print(f"{result['batches']} batches x {result['batch_size']} posts in {result['seconds']:.0f}s; "
          f"RSS {result['first_kib'] / 1024:.1f} -> {result['last_kib'] / 1024:.1f} MiB; "
          f"warm-up ({result['warmup']} batches) grew {result['warmup_growth_kib'] / 1024:.1f} MiB; "
          f"fitted slope over the {measured} batches after it: {result['slope_kib_per_batch']:.2f} KiB/batch "
          f"({result['steady_growth_kib'] / 1024:.2f} MiB in all; residual noise "
          f"{result['noise_kib'] / 1024:.2f} MiB)")
