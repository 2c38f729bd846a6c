#!/usr/bin/env bash
# The main job end to end on the real corpus, with the defaults a single machine gets:
# a SQLite file (han.db), the embedded Redis, one Celery worker on the CPU (or GPU when present).
set -euo pipefail
cd "$(dirname "$0")/.."
export HAN_DATA="${HAN_DATA:-../shared/data/20news-bydate.tar.gz}"
mkdir -p demo-out
started=$(date +%s)

echo "== 1. train the small preset on the full train split"
python -m cli train --preset small | tee demo-out/train.txt
version=$(sed -n 's/^\(v[0-9]*\): test accuracy.*/\1/p' demo-out/train.txt | tail -n 1)

echo "== 2. start the embedded Redis and a worker"
python -m cli broker start
celery -A worker worker -Q gpu -c 1 -n demo@%h --loglevel warning --logfile demo-out/worker.log &
worker=$!
trap 'kill -TERM $worker 2>/dev/null; wait $worker 2>/dev/null || true' EXIT

echo "== 3. submit all test posts and wait"
python -m cli export-posts --split test > demo-out/test-posts.jsonl
wc -l < demo-out/test-posts.jsonl
submit_started=$(date +%s)
python -m cli submit demo-out/test-posts.jsonl --model "$version" --wait | tee demo-out/submit.txt
submit_seconds=$(( $(date +%s) - submit_started ))
job=$(sed -n 's/^job \([0-9a-f-]*\):.*/\1/p' demo-out/submit.txt)
posts=$(sed -n 's/^ *classified: //p' demo-out/submit.txt)
echo "end to end through the queue: $posts posts in ${submit_seconds}s (submit to last prediction)"

python -m cli models --format json > demo-out/models.json
python -m cli status "$job" --format json > demo-out/status.json
python - "$version" <<'PY'
import json, sys
trained = next(m for m in json.load(open("demo-out/models.json")) if m["version"] == sys.argv[1])
served = json.load(open("demo-out/status.json"))
print(f"trainer's test accuracy {trained['accuracy']:.4f}, macro F1 {trained['macro_f1']:.4f}; "
      f"from the database: accuracy {served['accuracy']:.4f}, macro F1 {served['macro_f1']:.4f} "
      f"({served['classified']} posts) -> {'equal' if abs(trained['accuracy'] - served['accuracy']) < 1e-12 else 'DIFFERENT'}")
PY

echo "== 4. failure analysis of $version from the database"
echo "\$ python -m cli analyze failures --since $version"
python -m cli analyze failures --since "$version"
echo "demo finished in $(( $(date +%s) - started ))s (job $job, model $version)"
