"""PyTorch peer of crates/tensor/benches/precision.rs.

Forward pass (no grad, eval mode) of the W1 small CNN on a batch of 256 random 28x28 images,
fp32 and bf16 CPU autocast, NCHW and channels-last, on 2 threads. Prints the median of
repeated timings per variant in milliseconds.

Run with the torch of `cargo xtask setup`:
    ~/.cache/contrastive/torch-2.13.0/bin/python bench/peers/small_cnn_forward.py
"""

import statistics
import time

import torch
from torch import nn


def block(c_in, c_out):
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


def small_cnn():
    return nn.Sequential(
        *block(1, 32), *block(32, 32), nn.MaxPool2d(2),
        *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
        *block(64, 128), *block(128, 128),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )


def median_ms(fn, warmup=5, runs=30):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    for channels_last in (False, True):
        net = small_cnn().eval()
        x = torch.rand(256, 1, 28, 28)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        layout = "channels_last" if channels_last else "nchw"
        for precision in ("fp32", "bf16"):
            def step():
                with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                     enabled=precision == "bf16"):
                    net(x)
            print(f"{precision}_{layout}: {median_ms(step):.2f} ms")


if __name__ == "__main__":
    main()
