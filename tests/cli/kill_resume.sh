#!/usr/bin/env bash
# A run killed with SIGKILL mid-way shows as interrupted and `lathe-cli resume` finishes it.
#   kill_resume.sh LATHE_CLI
set -euo pipefail
CLI="$1"
DIR="$(mktemp -d)"
trap 'rm -rf "$DIR"' EXIT
python3 - "$DIR" <<'PY'
import json, random, sys
d = sys.argv[1]
random.seed(1)
with open(d + "/data.csv", "w") as f:
    f.write("a,b,c,label\n")
    for i in range(3000):
        v = [random.gauss(0, 1) for _ in range(3)]
        v[i % 3] += 2.5
        f.write("%f,%f,%f,%d\n" % (v[0], v[1], v[2], i % 3))
json.dump({"name": "kill-me", "seed": 1,
           "model": {"type": "mlp", "input_dim": 3, "hidden": [64, 64], "classes": 3},
           "dataset": {"format": "csv", "path": "data.csv", "label_column": "label"},
           "training": {"epochs": 12, "batch_size": 8, "checkpoint_every": 50},
           "methods": [{"name": "sgd", "lr": 0.05}]}, open(d + "/run.json", "w"))
PY
DB="$DIR/runs.db"
"$CLI" run "$DIR/run.json" --db "$DB" > "$DIR/first.log" 2>&1 &
PID=$!
# Wait for the first checkpoint, then kill without warning.
for _ in $(seq 1 600); do
  [ -f "$DIR/runs/1/checkpoint.safetensors" ] && break
  sleep 0.1
done
[ -f "$DIR/runs/1/checkpoint.safetensors" ] || { echo "no checkpoint appeared"; cat "$DIR/first.log"; exit 1; }
sleep 0.5
kill -9 "$PID"
wait "$PID" 2>/dev/null || true
"$CLI" runs --db "$DB" --status interrupted | tee "$DIR/runs.txt"
grep -q "kill-me" "$DIR/runs.txt" || { echo "the killed run is not listed as interrupted"; exit 1; }
"$CLI" resume 1 --db "$DB" --json > "$DIR/resume.json"
grep -q '"status": "done"' "$DIR/resume.json" || { echo "resume did not finish"; cat "$DIR/resume.json"; exit 1; }
grep -q '"test_accuracy"' "$DIR/resume.json"
echo "killed run resumed to done"
