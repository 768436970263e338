#!/bin/bash
# Encrypted inference of two (or more) ppml builds, run alternately so that a
# shared machine's load hits them alike; prints every run and the medians.
#   benches/speed_ab.sh MODEL REPS "EXTRA ARGS" BIN_A BIN_B [BIN_C ...]
#   TWO=1 benches/speed_ab.sh ...   # both cores (no pinning, no --threads)
# e.g. (2026-12-01 evening, issue 16 compute speedups):
#   benches/speed_ab.sh mlp500.ppml 5 "" /work/main/target/release/ppml target/release/ppml
#   benches/speed_ab.sh cnn.ppml 3 "--count 1000 --batch 100" MAIN/ppml target/release/ppml
#   TWO=1 benches/speed_ab.sh mlp500.ppml 5 "" MAIN/ppml target/release/ppml
# One core: RAYON_NUM_THREADS=1 taskset -c 0 ... --threads 1. Columns: binary,
# images/s (wall), cpu_seconds (all roles, user + system), wall seconds,
# bytes/image, rounds, agreement with the plaintext model.
set -u
cd "$(dirname "$0")/.."
model=$1 reps=$2 extra=$3
shift 3
out=$(mktemp)
date -u; uptime; lscpu | grep "Model name"
for r in $(seq 1 "$reps"); do
  for b in "$@"; do
    if [ -n "${TWO:-}" ]; then
      j=$("$b" infer --model "$model" --encrypted $extra --json 2>/dev/null | tail -1)
    else
      j=$(RAYON_NUM_THREADS=1 taskset -c 0 "$b" infer --model "$model" --encrypted --threads 1 $extra --json 2>/dev/null | tail -1)
    fi
    echo "$j" | python3 -c "import json,sys; d=json.load(sys.stdin); print('$b', round(d['images_per_second'],1), round(d['cpu_seconds'],3), round(d['seconds'],3), d['bytes_per_image'], d['rounds'], d['plaintext_agreement'])"
  done
done | tee "$out"
python3 - "$out" <<'PY'
import collections, statistics as s, sys
d = collections.defaultdict(list)
for l in open(sys.argv[1]):
    f = l.split()
    d[f[0]].append((float(f[1]), float(f[2]), f[4], f[5], f[6]))
for b, v in d.items():
    print(b, 'median images/s', s.median(x[0] for x in v), 'median cpu_seconds', s.median(x[1] for x in v),
          'bytes/image', v[0][2], 'rounds', v[0][3], 'agreement', sorted(set(x[4] for x in v)))
PY
rm -f "$out"
date -u; uptime
