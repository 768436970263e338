#!/bin/bash
# ppml's encrypted inference beside CrypTen 0.4.1, interleaved on one core.
#   benches/peers_side_by_side.sh MLP500.ppml NETA.ppml [CNN.ppml]
# Needs `cargo build --release`, CrypTen in $REF_PY (default /tmp/ref-venv/bin/python,
# set up as ../shared/reference/README.md says, outside the repository; never a
# dependency of ppml) and its scripts in $REF_DIR (default ../shared/reference/crypten),
# which must have trained their own mlp500 and netA (01_train_plain.py) first.
# Prints one line per run; the medians go into docs/BENCHMARKS.md.
set -u
cd "$(dirname "$0")/.."
MLP=$1 NETA=$2 CNN=${3:-}
REF_PY=${REF_PY:-/tmp/ref-venv/bin/python}
REF_DIR=${REF_DIR:-$(pwd)/../shared/reference/crypten}
export MNIST_DIR=${MNIST_DIR:-$(pwd)/data/mnist}
P=$(pwd)/target/release/ppml
date -u; uptime; lscpu | grep "Model name"; git log --oneline | head -1
ppml() { # model extra...
  local m=$1; shift
  RAYON_NUM_THREADS=1 taskset -c 0 "$P" infer --model "$m" --encrypted --threads 1 --json "$@" 2>/dev/null | tail -1 |
    python3 -c "import json,sys; d=json.load(sys.stdin); print('ppml', '$m', '$*', 'backend=%s' % d['backend'], 'ips=%.1f' % d['images_per_second'], 'cpu=%s' % d.get('cpu_seconds'), 'B/img=%.0f' % d['bytes_per_image'], 'rounds=%s' % d.get('rounds'), 'widths=%s' % d.get('cmp_widths'), 'agree=%s' % d.get('plaintext_agreement'))"
}
crypten() { # model
  (cd "$REF_DIR" && taskset -c 0 "$REF_PY" 02_crypten_infer.py "$1" --provider TTP --bs 1000 --n 10000 --reps 1 2>/dev/null |
    python3 -c "import json,sys; t=sys.stdin.read(); d=json.loads(t[t.index('{'):]); print('crypten', '$1', 'ips=%.1f' % (1000/d['ms_per_image_amortised']), 'agree', d['agreement_with_plain'])")
}
for rep in 1 2 3; do
  ppml "$MLP"
  PPML_BACKEND=avx2 ppml "$MLP"
  ppml "$NETA"
  [ $rep -le 2 ] && crypten mlp500 && crypten netA
done
if [ -n "$CNN" ]; then
  for rep in 1 2; do
    ppml "$CNN" --count 1000 --batch 100
    PPML_BACKEND=avx2 ppml "$CNN" --count 1000 --batch 100
    (cd "$REF_DIR" && taskset -c 0 "$REF_PY" 04_crypten_cnn.py --provider TTP --n 20 --bs 20 2>/dev/null | tail -1)
  done
fi
RAYON_NUM_THREADS=1 taskset -c 0 cargo run --release -q -p ppml-smpc --example kernel_speed 2>&1 | tail -3
date -u; uptime
