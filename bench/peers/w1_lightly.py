"""Python peer of W1 (shared/benchmarks.md): SimCLR on Fashion-MNIST with the small CNN,
written with lightly (SimCLRTransform, SimCLRProjectionHead, NTXentLoss) and plain PyTorch,
on 2 threads, the same work as `contrastive train --config configs/w1.toml`.

    python bench/peers/w1_lightly.py --data /usr/share/datasets/fashion-mnist \
        --precision fp32 --steps 40          # views/s over 40 steps after 5 warm-up steps
    python bench/peers/w1_lightly.py --data ... --precision bf16-cl --epochs 1   # + kNN

Augmentation runs in one DataLoader worker process (the other core trains), as our
prefetch thread does. Prints one JSON line.
"""

import argparse
import gzip
import json
import math
import time

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from lightly.transforms import SimCLRTransform

MEAN, STD = 0.2860, 0.3530


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


class Views(Dataset):
    def __init__(self, images, transform):
        self.images, self.transform = images, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i], mode="L"))


def block(c_in, c_out):
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


def small_cnn():
    return nn.Sequential(
        *block(1, 32), *block(32, 32), nn.MaxPool2d(2),
        *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
        *block(64, 128), *block(128, 128),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )


def embed(backbone, images, channels_last, bf16):
    backbone.eval()
    out = []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(images), 1024):
            x = torch.from_numpy(images[start:start + 1024]).float().div(255).unsqueeze(1)
            x = (x - MEAN) / STD
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            out.append(backbone(x).float())
    backbone.train()
    return torch.cat(out)


def knn_top1(train, train_labels, test, test_labels, k=200, t=0.1, classes=10):
    train = nn.functional.normalize(train, dim=1)
    test = nn.functional.normalize(test, dim=1)
    correct = 0
    for start in range(0, len(test), 1024):
        sim = test[start:start + 1024] @ train.T
        top, index = sim.topk(k, dim=1)
        votes = torch.zeros(len(top), classes).scatter_add_(1, train_labels[index], (top / t).exp())
        correct += (votes.argmax(1) == test_labels[start:start + 1024]).sum().item()
    return correct / len(test)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--precision", choices=["fp32", "bf16-cl"], default="fp32")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    bf16 = channels_last = args.precision == "bf16-cl"

    train = read_idx(f"{args.data}/train-images-idx3-ubyte.gz")
    transform = SimCLRTransform(
        input_size=28, cj_strength=0.5, min_scale=0.2, gaussian_blur=0.0,
        random_gray_scale=0.2, normalize={"mean": [MEAN], "std": [STD]},
    )
    loader = DataLoader(Views(train, transform), batch_size=256, shuffle=True, drop_last=True,
                        num_workers=1, persistent_workers=True, prefetch_factor=4)
    backbone, head = small_cnn(), SimCLRProjectionHead(128, 256, 128)
    model = nn.Sequential(backbone, head)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    criterion = NTXentLoss(temperature=0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)
    epochs = max(args.epochs, 1)
    total = epochs * len(loader)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))

    warmup, timed_steps, timed = 5, 0, 0.0
    step = 0
    started = time.perf_counter()
    for _ in range(epochs):
        tick = time.perf_counter()
        for (x0, x1) in loader:
            x = torch.cat([x0, x1])
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                z = model(x)
            z0, z1 = z.float().chunk(2)
            loss = criterion(z0, z1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            now = time.perf_counter()
            if step > warmup:
                timed += now - tick
                timed_steps += 1
            tick = now
            if args.epochs == 0 and step >= warmup + args.steps:
                break
        if args.epochs == 0:
            break
    result = {
        "peer": "lightly", "precision": args.precision, "steps": step,
        "views_per_s": timed_steps * 512 / timed, "wall_s": time.perf_counter() - started,
    }
    if args.epochs > 0:
        start = time.perf_counter()
        test = read_idx(f"{args.data}/t10k-images-idx3-ubyte.gz")
        labels = torch.from_numpy(read_idx(f"{args.data}/train-labels-idx1-ubyte.gz").astype(np.int64))
        test_labels = torch.from_numpy(read_idx(f"{args.data}/t10k-labels-idx1-ubyte.gz").astype(np.int64))
        result["knn_top1"] = knn_top1(embed(backbone, train, channels_last, bf16), labels,
                                      embed(backbone, test, channels_last, bf16), test_labels)
        result["eval_s"] = time.perf_counter() - start
    print(json.dumps(result))


if __name__ == "__main__":
    main()
