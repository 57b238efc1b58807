"""PyTorch + pytorch-metric-learning peer of crates/losses/examples/w3.rs (benchmark W3).

Same workloads, 2 threads: median of 5 timed runs after a warm-up, and the peak resident
memory one run adds, measured in a fresh child process per workload.

    ~/.cache/contrastive/torch-2.13.0/bin/pip install pytorch-metric-learning
    ~/.cache/contrastive/torch-2.13.0/bin/python bench/peers/losses_w3.py
"""

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
    if name == "triplet_batch_hard_256":
        loss, miner = losses.TripletMarginLoss(margin=0.2), miners.BatchHardMiner()
        x, labels = torch.randn(256, D), torch.arange(256) // 8

        def run():
            e = x.clone().requires_grad_()
            loss(e, labels, miner(e, labels)).backward()
        return run
    if name == "contrastive_pairs_4096":
        loss = losses.ContrastiveLoss(pos_margin=0.0, neg_margin=1.0)
        a, b = torch.randn(4096, D), torch.randn(4096, D)
        idx = torch.arange(4096)
        pos, neg = idx[idx % 2 == 1], idx[idx % 2 == 0]
        tuple4 = (pos, pos + 4096, neg, neg + 4096)
        labels = torch.arange(8192)

        def run():
            e = torch.cat([a.clone().requires_grad_(), b])
            loss(e, labels, tuple4).backward()
        return run
    raise ValueError(name)


WORKLOADS = ["nt_xent_256", "nt_xent_1024", "nt_xent_4096", "simclr_ce_256", "simclr_ce_1024",
             "simclr_ce_4096", "triplet_batch_hard_256", "contrastive_pairs_4096"]


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
    print("workload,median_ms,peak_mib")
    for name in WORKLOADS:
        run = workload(name)
        try:
            run()
        except RuntimeError as e:  # pml's NT-Xent is cubic in memory: it fails past N=256
            print(f"{name},failed,{str(e).splitlines()[0][:80]}")
            continue
        times = []
        for _ in range(5):
            start = time.perf_counter()
            run()
            times.append((time.perf_counter() - start) * 1e3)
        kib = int(subprocess.run([sys.executable, __file__, "--memory", name], capture_output=True,
                                 text=True).stdout.strip() or "0")
        print(f"{name},{statistics.median(times):.1f},{kib / 1024:.0f}")


if __name__ == "__main__":
    main()
