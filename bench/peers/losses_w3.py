"""PyTorch + pytorch-metric-learning peer of W3 (crates/bench/src/w3.rs).

Same workloads, 2 threads: median of --runs timed runs after a warm-up, and the peak
resident memory one run adds, measured in a fresh child process per workload. Prints one
JSON row per workload, named as ours (`simclr_ce_N`, plain PyTorch's cross-entropy form
that lightly uses, is reported against our `nt_xent_N`). `cargo xtask bench --peers` runs
it; by hand:

    python bench/peers/losses_w3.py [--small] [--runs 5]
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses, miners

D = 128


def workload(name):
    torch.manual_seed(0)
    if name.startswith("simclr_ce_"):
        # NT-Xent as lightly and the SimCLR code compute it: cross-entropy over the
        # [2N, 2N] similarities with the diagonal masked.
        n = int(name.split("_")[2])
        z1, z2 = torch.randn(n, D), torch.randn(n, D)
        targets = (torch.arange(2 * n) + n) % (2 * n)

        def run():
            a, b = z1.clone().requires_grad_(), z2.clone().requires_grad_()
            z = F.normalize(torch.cat([a, b]), dim=1)
            sim = (z @ z.T / 0.5).fill_diagonal_(-float("inf"))
            F.cross_entropy(sim, targets).backward()
        return run
    if name.startswith("nt_xent_"):
        n = int(name.split("_")[2])
        loss = losses.NTXentLoss(temperature=0.5)
        z1, z2 = torch.randn(n, D), torch.randn(n, D)
        labels = torch.arange(n).repeat(2)

        def run():
            a, b = z1.clone().requires_grad_(), z2.clone().requires_grad_()
            loss(torch.cat([a, b]), labels).backward()
        return run
    if name.startswith("triplet_"):
        mining, n = name[len("triplet_"):].rsplit("_", 1)
        n = int(n)
        loss = losses.TripletMarginLoss(margin=0.2)
        # batch_all: the loss over every triplet (pml's default without a miner, the mean
        # over the non-zero ones, as ours). semi_hard: pml's TripletMarginMiner "semihard"
        # (every negative within the margin beyond the positive), which is not FaceNet's
        # one-negative-per-pair rule that ours follows: the same role, not the same values.
        miner = {"batch_all": None, "batch_hard": miners.BatchHardMiner(),
                 "semi_hard": miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard")}[mining]
        x, labels = torch.randn(n, D), torch.arange(n) // 8

        def run():
            e = x.clone().requires_grad_()
            (loss(e, labels) if miner is None else loss(e, labels, miner(e, labels))).backward()
        return run
    if name.startswith("contrastive_pairs_"):
        n = int(name.split("_")[2])
        loss = losses.ContrastiveLoss(pos_margin=0.0, neg_margin=1.0)
        a, b = torch.randn(n, D), torch.randn(n, D)
        idx = torch.arange(n)
        pos, neg = idx[idx % 2 == 1], idx[idx % 2 == 0]
        tuple4 = (pos, pos + n, neg, neg + n)
        labels = torch.arange(2 * n)

        def run():
            e = torch.cat([a.clone().requires_grad_(), b])
            loss(e, labels, tuple4).backward()
        return run
    raise ValueError(name)


def workloads(small):
    sizes = [32, 64] if small else [256, 1024, 4096]
    return ([f"nt_xent_{n}" for n in sizes] + [f"simclr_ce_{n}" for n in sizes]
            + [f"triplet_{m}_{32 if small else 256}" for m in ("batch_all", "batch_hard", "semi_hard")]
            + [f"contrastive_pairs_{256 if small else 4096}"])


def row(name, value, peak_mib=None, note=None):
    peer = "plain PyTorch (CE form)" if name.startswith("simclr_ce_") else "pytorch-metric-learning"
    out = {"workload": "W3", "name": name.replace("simclr_ce_", "nt_xent_"), "unit": "ms",
           "value": value, "higher_is_better": False, "peer": peer}
    if peak_mib is not None:
        out["peak_mib"] = peak_mib
    if note:
        out["note"] = note
    print(json.dumps(out), flush=True)


def rss_kib(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field))


def main():
    torch.set_num_threads(2)
    if len(sys.argv) == 3 and sys.argv[1] == "--memory":
        run = workload(sys.argv[2])
        before = rss_kib("VmRSS:")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        run()
        print(rss_kib("VmHWM:") - before)
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for name in workloads(args.small):
        run = workload(name)
        try:
            run()
        except RuntimeError as e:  # pml's NT-Xent is cubic in memory: it fails past N=256
            row(name, None, note="failed: " + str(e).splitlines()[0][:80])
            continue
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            run()
            times.append((time.perf_counter() - start) * 1e3)
        kib = int(subprocess.run([sys.executable, __file__, "--memory", name], capture_output=True,
                                 text=True).stdout.strip() or "0")
        row(name, statistics.median(times), peak_mib=kib / 1024)


if __name__ == "__main__":
    main()
