#!/usr/bin/env bash
# W1 fp32 throughput with and without freed memory kept for reuse (docs/benchmarks.md,
# "Training (W1)"): ours as built (keep_freed_memory), ours with glibc's defaults (mallopt
# made a no-op by preloading noop_mallopt.c), lightly's peer with glibc's defaults, and the
# peer with the same setting through GLIBC_TUNABLES. Three interleaved rounds, views/s over
# 30 steps after 5 warm-up steps. Needs `cargo xtask bench --peers` run once (release
# build, peer environment, dataset).
set -euo pipefail
cd "$(dirname "$0")/../.."
python=$(realpath .libtorch)/../../../../bin/python
data=${CONTRASTIVE_DATA_DIR:-/usr/share/datasets/fashion-mnist}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -shared -fPIC -O2 -o "$work/noop_mallopt.so" bench/allocator/noop_mallopt.c

ours() {
    rm -rf "$work/run"
    env "$@" target/release/contrastive train --config configs/w1.toml --quiet \
        --out "$work/run" --data-dir "$data" --set run.max_steps=35 \
        --set run.precision=\"fp32\" --set run.channels_last=\"off\" \
        --set eval.every_epochs=0 --set eval.final=false >/dev/null 2>&1
    python3 - "$work/run/metrics.jsonl" <<'PY'
import json, sys
rates = [json.loads(l)["views_per_s"] for l in open(sys.argv[1]) if '"step"' in l][5:]
print(round(len(rates) * 512 / sum(512 / r for r in rates), 1))
PY
}

peer() {
    env "$@" "$python" bench/peers/w1_lightly.py --data "$data" --precision fp32 --steps 30 \
        2>/dev/null | tail -1 | python3 -c 'import json, sys; print(round(json.load(sys.stdin)["views_per_s"], 1))'
}

kept=GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647
for round in 1 2 3; do
    echo "round $round: ours kept $(ours) | ours glibc defaults" \
        "$(ours LD_PRELOAD="$work/noop_mallopt.so") | peer defaults $(peer)" \
        "| peer kept $(peer "$kept")"
done
