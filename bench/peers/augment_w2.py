"""torchvision peer of crates/augment/examples/w2.rs (benchmark W2): the same pipelines with
torchvision.transforms.v2 on uint8 tensors, image by image, two views each, on 1 thread.
Prints views per second (median of 5 passes).

    ~/.cache/contrastive/torch-2.13.0/bin/python bench/peers/augment_w2.py
"""

import statistics
import time

import torch
from torchvision.transforms import v2 as T


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


def rate(transform, batch):
    def one_pass():
        start = time.perf_counter()
        for img in batch:
            transform(img)
            transform(img)
        return 2 * len(batch) / (time.perf_counter() - start)
    one_pass()
    return statistics.median(one_pass() for _ in range(5))


def main():
    torch.set_num_threads(1)
    print("workload,threads,views_per_s")
    for name, transform, batch in [
        ("w1_28x28_gray", w1(), images(512, 28, 1)),
        ("simclr_32x32_rgb_blur", simclr(32), images(256, 32, 3)),
        ("simclr_224_from_256_rgb_blur", simclr(224), images(16, 256, 3)),
    ]:
        print(f"{name},1,{rate(transform, batch):.0f}")


if __name__ == "__main__":
    main()
