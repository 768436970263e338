#!/usr/bin/env bash
# Figures of issue 16 for the SecureNN MNIST networks B (MiniONN), C (LeNet),
# D (Chameleon), also benchmarked by Falcon
# (docs/NETWORKS.md; results in docs/BENCHMARKS.md, section
# "SecureNN/Falcon networks B, C, D (issue 16)").
#
#   benches/bcd_figures.sh [OUTDIR]        (default OUTDIR: target/bcd)
#
# 1. trains net-b, net-c, net-d with the default recipe (5 epochs, batch 64,
#    lr 0.05, momentum 0.9, cosine; seed 42) unless OUTDIR/<net>.ppml exists;
# 2. runs encrypted inference (3 computing parties + model owner + data owner
#    in one process, semi-honest) on the MNIST test set, one thread pinned to
#    one core;
# 3. prints one table row per network.
# Optionally (CRYPTEN=1) runs CrypTen 2-party TTP on the same layers
# (benches/support/crypten_bcd.py, from the reference venv $CRYPTEN_PY).
#
# Environment: COUNT (images, default 10000), CORE (default 0),
# BATCH_B/BATCH_C/BATCH_D (images per batch: 500/500/1000; peak RSS of one
# run about 1.4 GB for net-b and 1.7 GB for net-c at 500), TRAIN_THREADS (2),
# CRYPTEN=1, CRYPTEN_PY (/tmp/ref-venv/bin/python), CRYPTEN_N (64),
# INFER=0 (only print the table of the results already in OUTDIR).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-target/bcd}
COUNT=${COUNT:-10000}
CORE=${CORE:-0}
TRAIN_THREADS=${TRAIN_THREADS:-2}
mkdir -p "$OUT"
cargo build --release -q -p ppml --bin ppml
P=target/release/ppml

batch_of() {
    case "$1" in
        net-b) echo "${BATCH_B:-500}" ;;
        net-c) echo "${BATCH_C:-500}" ;;
        net-d) echo "${BATCH_D:-1000}" ;;
    esac
}

for net in net-b net-c net-d; do
    [ "${INFER:-1}" = 0 ] && continue
    if [ ! -f "$OUT/$net.ppml" ]; then
        echo "training $net ..." >&2
        "$P" train --model "$net" --threads "$TRAIN_THREADS" --save "$OUT/$net.ppml" --json \
            2>"$OUT/$net.train.log" | tail -n 1 >"$OUT/$net.train.json"
    fi
    b=$(batch_of "$net")
    echo "encrypted inference $net: $COUNT images, batch $b, core $CORE ..." >&2
    RAYON_NUM_THREADS=1 taskset -c "$CORE" "$P" infer --model "$OUT/$net.ppml" --encrypted \
        --threads 1 --batch "$b" --count "$COUNT" --json \
        2>"$OUT/$net.infer.log" | tail -n 1 >"$OUT/$net.infer.json"
done

if [ "${CRYPTEN:-0}" = 1 ] && [ "${INFER:-1}" != 0 ]; then
    echo "CrypTen (TTP, 2 parties) on the same layers ..." >&2
    taskset -c "$CORE" "${CRYPTEN_PY:-/tmp/ref-venv/bin/python}" benches/support/crypten_bcd.py \
        --net all --n "${CRYPTEN_N:-64}" --bs 32 2>"$OUT/crypten.log" >"$OUT/crypten.jsonl"
fi

python3 - "$OUT" <<'EOF'
import json, os, sys
out = sys.argv[1]
crypten = {}
p = os.path.join(out, "crypten.jsonl")
if os.path.exists(p):
    for line in open(p):
        r = json.loads(line)
        crypten[r["net"]] = r
print("| net | train acc | images | batch | s | cpu s | images/s | images/cpu-s | KB/image | rounds | rounds/batch | agreement | accuracy | cmp_widths | backend | CrypTen images/s (KB/image rank 0) |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for net in ["net-b", "net-c", "net-d"]:
    t = json.load(open(os.path.join(out, f"{net}.train.json")))
    r = json.load(open(os.path.join(out, f"{net}.infer.json")))
    batches = -(-r["images"] // r["batch"])
    cpu = r.get("cpu_seconds")
    c = crypten.get(net)
    ct = f'{c["images_per_s"]:.2f} ({c["bytes_per_image_rank0"] / 1e3:,.0f})' if c else "-"
    print(
        f'| {net} | {100 * t["test_accuracy"]:.2f}% | {r["images"]:,} | {r["batch"]} | {r["seconds"]:.1f} | '
        f'{cpu:.1f} | {r["images_per_second"]:.1f} | {r["images"] / cpu:.1f} | '
        f'{r["bytes_per_image"] / 1e3:,.1f} | {r["rounds"]} | {r["rounds"] / batches:.1f} | '
        f'{r["plaintext_agreement"]:.4f} | {100 * r["accuracy"]:.2f}% | {r["cmp_widths"]} | {r["backend"]} | {ct} |'
    )
EOF
