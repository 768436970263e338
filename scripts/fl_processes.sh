#!/usr/bin/env bash
# 1 fl-server + N fl-client processes on loopback, 2NN IID, secure aggregation;
# kills two clients after round KILL_AT and restarts one after round BACK_AT.
# Usage: scripts/fl_processes.sh N ROUNDS KILL_AT BACK_AT OUTDIR [extra fl-server flags]
# KILL_AT=0: nobody is killed. PARTS (env): parts of the training set (default N).
# TLS=1 (env): keys and a parties file in OUTDIR (party server, client-N) and
# the TLS session layer; otherwise plaintext TCP with --insecure.
set -euo pipefail
N=${1:-20}; ROUNDS=${2:-30}; KILL_AT=${3:-10}; BACK_AT=${4:-18}; OUT=${5:-/tmp/fl_procs}
shift 5 || true
P=${P:-target/release/ppml}
PORT=${PORT:-7911}
mkdir -p "$OUT"; rm -f "$OUT"/*
PARTS=${PARTS:-$N}
if [ "${TLS:-0}" = 1 ]; then
  : > "$OUT/parties.toml"
  for name in server $(seq -f "client-%g" 0 $((N - 1))); do
    $P keygen --name "$name" --out "$OUT/keys" > /dev/null

    printf '[[party]]\nname = "%s"\naddress = "127.0.0.1:%s"\ncertificate = "keys/%s.crt"\n\n' \
      "$name" "$([ "$name" = server ] && echo $PORT || echo 1)" "$name" >> "$OUT/parties.toml"
  done
  LINK=(--parties "$OUT/parties.toml" --keys "$OUT/keys")
else
  LINK=(--insecure)
fi
$P fl-server "${LINK[@]}" --listen 127.0.0.1:$PORT --wait-clients "$N" --partition-clients "$PARTS" --fraction 1 \
  --model 2nn --local-epochs 1 --batch 10 --lr 0.1 --rounds "$ROUNDS" --partition iid \
  --normalize unit --secure-aggregation --round-timeout 60 --join-timeout 900 "$@" --json \
  > "$OUT/server.json" 2> "$OUT/server.err" &
SPID=$!
start() { $P fl-client "${LINK[@]}" --server 127.0.0.1:$PORT --id "$1" --json > "$OUT/c$1.$2.json" 2> "$OUT/c$1.$2.err" & echo $! > "$OUT/c$1.pid"; }
# Staggered starts: every client decompresses MNIST once at start.
for i in $(seq 0 $((N - 1))); do start "$i" 0; sleep "${STAGGER:-0}"; done
wait_round() { until grep -q "round $1:" "$OUT/server.err" 2>/dev/null; do kill -0 $SPID 2>/dev/null || exit 1; sleep 0.2; done; }
if [ "$KILL_AT" -gt 0 ]; then
wait_round "$KILL_AT"
# RSS of every client process while it runs (kB)
for i in $(seq 0 $((N - 1))); do grep VmRSS /proc/"$(cat "$OUT/c$i.pid")"/status | awk '{print $2}'; done > "$OUT/rss_kb.txt" || true
kill "$(cat "$OUT/c3.pid")" "$(cat "$OUT/c7.pid")"
echo "killed clients 3 and 7 after round $KILL_AT" >> "$OUT/script.log"
wait_round "$BACK_AT"
start 3 1
echo "restarted client 3 after round $BACK_AT" >> "$OUT/script.log"
fi
wait $SPID
sleep 1
echo done >> "$OUT/script.log"
