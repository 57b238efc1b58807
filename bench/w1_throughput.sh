#!/usr/bin/env bash
# W1 training throughput, ours and the lightly peer interleaved, on this machine:
#   bash bench/w1_throughput.sh [ROUNDS] [STEPS]
# Ours: `contrastive train --config configs/fmnist-simclr.toml` limited to 5 + STEPS steps;
# views/s over the steps after the 5 warm-up steps, read from metrics.jsonl.
# Peer: bench/peers/w1_lightly.py, same work, same count. Prints one JSON line per run.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
steps=${2:-30}
# The torch of `cargo xtask setup` (lightly installed into it), unless PEER_PYTHON is set.
python=${PEER_PYTHON:-$(realpath .libtorch)/../../../../bin/python}
binary=target/release/contrastive
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

ours() { # precision channels_last
    rm -rf "$out/run"
    "$binary" train --config configs/fmnist-simclr.toml --out "$out/run" --quiet \
        --set run.max_steps=$((steps + 5)) --set run.precision="\"$1\"" \
        --set run.channels_last="\"$2\"" --set eval.every_epochs=0 \
        --set eval.final=false >/dev/null 2>&1
    python3 - "$out/run/metrics.jsonl" "$1" "$2" <<'PY'
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1])]
steps = [r for r in steps if r["kind"] == "step"][5:]
seconds = sum(512 / r["views_per_s"] for r in steps)
print(json.dumps({"who": "ours", "precision": sys.argv[2], "channels_last": sys.argv[3],
                  "steps": len(steps), "views_per_s": round(len(steps) * 512 / seconds, 1)}))
PY
}

for _ in $(seq "$rounds"); do
    ours fp32 off
    "$python" bench/peers/w1_lightly.py --precision fp32 --steps "$steps" 2>/dev/null
    ours fp32 on
    ours bf16 on
    "$python" bench/peers/w1_lightly.py --precision bf16-cl --steps "$steps" 2>/dev/null
done
