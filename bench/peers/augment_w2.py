"""Peers of W2 (crates/bench/src/w2.rs), on 1 thread, image by image, two views each:
torchvision.transforms.v2 on uint8 tensors, and lightly's SimCLRTransform on PIL images
(which also converts to normalised float tensors). Prints one JSON row per pipeline and peer
(views per second, median of --runs passes after a warm-up), named as ours' 1-thread rows.
`cargo xtask bench --peers` runs it; by hand:

    python bench/peers/augment_w2.py [--small] [--runs 5]
"""

import argparse
import json
import statistics
import time

import torch
from PIL import Image
from torchvision.transforms import v2 as T

try:
    from lightly.transforms import SimCLRTransform
except ImportError:  # lightly is optional
    SimCLRTransform = None


def w1():
    return T.Compose([
        T.RandomResizedCrop(28, scale=(0.2, 1.0), antialias=True),
        T.RandomHorizontalFlip(0.5),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(0.2),
    ])


def simclr(size):
    kernel = int(size * 0.1) | 1
    return T.Compose([
        T.RandomResizedCrop(size, scale=(0.08, 1.0), antialias=True),
        T.RandomHorizontalFlip(0.5),
        T.RandomApply([T.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
        T.RandomGrayscale(0.2),
        T.RandomApply([T.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.5),
    ])


def images(n, side, channels):
    return [torch.randint(0, 256, (channels, side, side), dtype=torch.uint8) for _ in range(n)]


def rate(transform, batch, runs, views_per_call=1):
    calls = 2 // views_per_call

    def one_pass():
        start = time.perf_counter()
        for img in batch:
            for _ in range(calls):
                transform(img)
        return 2 * len(batch) / (time.perf_counter() - start)
    one_pass()
    return statistics.median(one_pass() for _ in range(runs))


def row(name, peer, value):
    print(json.dumps({"workload": "W2", "name": f"{name}_1t", "unit": "views/s", "value": value,
                      "higher_is_better": True, "peer": peer}), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    n = (lambda full, small: small if args.small else full)
    torch.set_num_threads(1)
    for name, transform, batch in [
        ("w1_28x28_gray", w1(), images(n(512, 32), 28, 1)),
        ("simclr_32x32_rgb_blur", simclr(32), images(n(256, 16), 32, 3)),
        ("simclr_224_from_256_rgb_blur", simclr(224), images(n(16, 2), 256, 3)),
    ]:
        row(name, "torchvision v2", rate(transform, batch, args.runs))
    if SimCLRTransform is None:
        return
    lightly = [
        ("w1_28x28_gray", SimCLRTransform(input_size=28, cj_strength=0.5, min_scale=0.2, gaussian_blur=0.0,
                                          normalize={"mean": [0.2860], "std": [0.3530]}), n(512, 32), 28, "L"),
        ("simclr_32x32_rgb_blur", SimCLRTransform(input_size=32), n(256, 16), 32, "RGB"),
        ("simclr_224_from_256_rgb_blur", SimCLRTransform(input_size=224), n(16, 2), 256, "RGB"),
    ]
    for name, transform, count, side, mode in lightly:
        channels = 1 if mode == "L" else 3
        batch = [Image.fromarray(t.permute(1, 2, 0).squeeze(-1).numpy() if channels == 1 else
                                 t.permute(1, 2, 0).numpy(), mode) for t in images(count, side, channels)]
        row(name, "lightly SimCLRTransform", rate(transform, batch, args.runs, views_per_call=2))


if __name__ == "__main__":
    main()
