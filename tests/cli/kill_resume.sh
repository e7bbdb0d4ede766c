#!/usr/bin/env bash
# A run killed with SIGKILL mid-way shows as interrupted and `lathe-cli resume` finishes it.
#   kill_resume.sh LATHE_CLI
set -euo pipefail
CLI="$1"
DIR="$(mktemp -d)"
trap 'rm -rf "$DIR"' EXIT
# Three classes by which of three features is largest (awk: no Python needed on CI).
awk 'BEGIN { srand(1); print "a,b,c,label";
  for (i = 0; i < 3000; i++) {
    for (k = 0; k < 3; k++) v[k] = sqrt(-2 * log(1 - rand())) * cos(6.283185307 * rand());
    v[i % 3] += 2.5; printf "%f,%f,%f,%d\n", v[0], v[1], v[2], i % 3 } }' > "$DIR/data.csv"
cat > "$DIR/run.json" <<'JSON'
{"name": "kill-me", "seed": 1,
 "model": {"type": "mlp", "input_dim": 3, "hidden": [64, 64], "classes": 3},
 "dataset": {"format": "csv", "path": "data.csv", "label_column": "label"},
 "training": {"epochs": 4, "batch_size": 8, "checkpoint_every": 50},
 "methods": [{"name": "sgd", "lr": 0.05}]}
JSON
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
