#!/usr/bin/env bash
# Flower's deployment runtime on loopback: one SuperLink, N SuperNodes and
# `flwr run` of this app (ppml clients, Flower SecAgg+ aggregation).
#   examples/flower/run.sh [--supernodes N] [--rounds R] [--no-secagg] [--fraction-evaluate F]
# Logs go to stderr and $OUT/logs; the last stdout line is one JSON object with
# rounds, accuracy, seconds_per_round, supernodes (and more).
# Needs a Python environment with flwr and ppml: $PPML_VENV (default: the one
# scripts/python-env.sh makes; it is created when missing).
# Stops only the processes it started (by PID, with their children).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
N=2
R=3
SECAGG=true
FEVAL=1.0
while [ $# -gt 0 ]; do
  case "$1" in
    --supernodes) N=$2; shift 2 ;;
    --rounds) R=$2; shift 2 ;;
    --no-secagg) SECAGG=false; shift ;;          # plain FedAvg (for comparisons)
    --fraction-evaluate) FEVAL=$2; shift 2 ;;    # client-side evaluation (default 1.0)
    -h|--help) sed -n 2,9p "$0"; exit 0 ;;
    *) echo "unknown argument $1 (use --supernodes N --rounds R)" >&2; exit 2 ;;
  esac
done
case "$FEVAL" in ''|*[!0-9.]*) echo "--fraction-evaluate takes a number in [0, 1]" >&2; exit 2 ;; esac
case "$N$R" in *[!0-9]*) echo "--supernodes and --rounds take positive integers" >&2; exit 2 ;; esac
[ "$N" -ge 2 ] && [ "$N" -le 100 ] || { echo "--supernodes must be in 2..=100 (SecAgg+ needs 2)" >&2; exit 2; }
[ "$R" -ge 1 ] && [ "$R" -le 1000 ] || { echo "--rounds must be in 1..=1000" >&2; exit 2; }

VENV=$("$ROOT/scripts/python-env.sh" >&2 && "$ROOT/scripts/python-env.sh" --print)
B=$VENV/bin
OUT=$(mktemp -d "${TMPDIR:-/tmp}/ppml-flower.XXXXXX")
mkdir -p "$OUT/logs" "$OUT/flwr-home"
export PATH=$B:$PATH  # the SuperLink and SuperNodes start flower-superexec and flwr-* from here
export FLWR_HOME=$OUT/flwr-home FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1
export PPML_DATA=${PPML_DATA:-$ROOT/data/mnist} PYTHONPATH=$HERE${PYTHONPATH:+:$PYTHONPATH}
# Free loopback ports: the SuperLink's HTTP API (Fleet, Control, ServerAppIo)
# and each SuperNode's runtime API.
read -r P_LINK P_NODES < <("$B/python" - "$N" <<'PY'
import socket, sys
ss = [socket.socket() for _ in range(1 + int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
ports = [s.getsockname()[1] for s in ss]
for s in ss: s.close()
print(ports[0], ",".join(map(str, ports[1:])))
PY
)
IFS=, read -r -a NODE_PORTS <<< "$P_NODES"
cat > "$FLWR_HOME/config.toml" <<TOML
[superlink]
default = "local"

[superlink.local]
address = "127.0.0.1:$P_LINK"
insecure = true
TOML
PIDS=()
descendants() { for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do echo "$c"; descendants "$c"; done; }
cleanup() {
  # Collect the whole tree first (children are reparented once a parent dies),
  # ask politely, then SIGKILL what is left: Flower's processes may ignore TERM.
  local all=() p
  for p in "${PIDS[@]}"; do all+=("$p" $(descendants "$p")); done
  [ ${#all[@]} -gt 0 ] || return 0
  kill "${all[@]}" 2>/dev/null || true
  for _ in $(seq 50); do
    local alive=0
    for p in "${all[@]}"; do kill -0 "$p" 2>/dev/null && alive=1 && break; done
    [ $alive -eq 0 ] && return 0
    sleep 0.1
  done
  kill -9 "${all[@]}" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
"$B/flower-superlink" --insecure --host 127.0.0.1 --port "$P_LINK" \
  --disable-runtime-dependency-installation \
  > "$OUT/logs/superlink.log" 2>&1 &
PIDS+=($!)
# Wait for the SuperLink to listen (at most 60 s).
for _ in $(seq 600); do
  kill -0 "${PIDS[0]}" 2>/dev/null || { tail -n 20 "$OUT/logs/superlink.log" >&2; echo "{\"error\": \"the SuperLink exited\"}"; exit 1; }
  "$B/python" -c "import socket,sys; socket.create_connection(('127.0.0.1',$P_LINK),0.2)" 2>/dev/null && break
  sleep 0.1
done
for i in $(seq 0 $((N - 1))); do
  "$B/flower-supernode" --insecure --superlink "127.0.0.1:$P_LINK" \
    --host 127.0.0.1 --port "${NODE_PORTS[$i]}" \
    --node-config "partition-id=$i num-partitions=100" \
    > "$OUT/logs/supernode_$i.log" 2>&1 &
  PIDS+=($!)
done
T0=$(date +%s.%N)
RESULT=$OUT/result.json
set +e
"$B/flwr" run "$HERE" local --stream \
  --run-config "num-server-rounds=$R num-supernodes=$N secagg=$SECAGG fraction-evaluate=$FEVAL result-file='$RESULT'" \
  > "$OUT/logs/flwr_run.log" 2>&1
RC=$?
set -e
WALL=$(echo "$(date +%s.%N) - $T0" | bc)
echo "flwr run exited $RC after ${WALL}s; logs in $OUT/logs" >&2
if [ $RC -ne 0 ] || [ ! -s "$RESULT" ]; then
  tail -n 40 "$OUT/logs/flwr_run.log" >&2
  echo "{\"error\": \"flwr run failed (exit $RC)\", \"logs\": \"$OUT/logs\"}"
  exit 1
fi
"$B/python" - "$RESULT" "$WALL" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
r["run_wall_seconds"] = float(sys.argv[2])
r["runtime"] = "flower-deployment"
print(json.dumps(r))
PY
