#!/usr/bin/env bash
# Re-runs the figures of docs/BENCHMARKS.md, "Cheaper comparisons (issue 16)":
# encrypted inference of mlp500 and net-a on all 10,000 test images (batch
# 1000) and of cnn on 1,000 (batch 100), every party in one process pinned to
# one core, faithful (default) and exact comparisons, for one or two ppml
# binaries (e.g. main's as "before").
#
# usage: benches/cmp_figures.sh MLP500.ppml NETA.ppml CNN.ppml [BIN ...]
#   BIN defaults to target/release/ppml; give main's binary too to get the
#   before/after table in one run (a binary without --comparison runs once,
#   as "exact"). CORE (default 0) picks the core; PPML_BACKEND is passed on.
# Prints one tab-separated line per run:
#   bin model comparison images images/s cpu_seconds bytes/image rounds agreement widths skips
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,14p' "$0" >&2
  exit 2
fi
mlp="$1" neta="$2" cnn="$3"
shift 3
bins=("$@")
[ ${#bins[@]} -eq 0 ] && bins=(target/release/ppml)
core="${CORE:-0}"
printf 'bin\tmodel\tcomparison\timages\timages_per_s\tcpu_seconds\tbytes_per_image\trounds\tagreement\twidths\tskips\n'
for bin in "${bins[@]}"; do
  if "$bin" infer --help 2>/dev/null | grep -q -- '--comparison'; then
    modes=(faithful exact)
  else
    modes=(none)
  fi
  for spec in "mlp500:$mlp:10000:1000" "net-a:$neta:10000:1000" "cnn:$cnn:1000:100"; do
    IFS=: read -r name path count batch <<<"$spec"
    for mode in "${modes[@]}"; do
      flag=()
      [ "$mode" != none ] && flag=(--comparison "$mode")
      RAYON_NUM_THREADS=1 taskset -c "$core" "$bin" infer --model "$path" --encrypted \
        --threads 1 --count "$count" --batch "$batch" "${flag[@]}" --json 2>/dev/null |
        tail -1 |
        python3 -c '
import json, sys
d = json.load(sys.stdin)
bin, name, mode = sys.argv[1:4]
mode = d.get("comparison", "exact") if mode == "none" else mode
print("\t".join(str(x) for x in [bin, name, mode, d["images"], round(d["images_per_second"], 1),
      d["cpu_seconds"], round(d["bytes_per_image"]), d["rounds"], d["plaintext_agreement"],
      d.get("cmp_widths"), d.get("cmp_skips", "-")]))' "$bin" "$name" "$mode"
    done
  done
done
