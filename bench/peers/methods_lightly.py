"""Python peer of the per-method table (docs/benchmarks.md, "Every method on Fashion-MNIST"):
one self-supervised method trained with lightly's own heads, losses and transforms on
Fashion-MNIST with the small CNN, for the same wall time as `contrastive train --config
configs/fmnist-<method>.toml` (its `run.time_budget`), then evaluated as the trainer does.

    python bench/peers/methods_lightly.py --method byol --lr 0.5 --momentum 0.98 \
        --min-scale 0.2 --budget-s 720
    python bench/peers/methods_lightly.py --method barlow-twins --optimizer lars --lr 0.3 \
        --min-scale 0.2
    python bench/peers/methods_lightly.py --method simsiam --lr 0.2 --batch-size 128 \
        --min-scale 0.3

The network, views and optimiser are the configs' own: the small CNN, SimCLR's views at
28 pixels with blur (`simclr-blur`: lightly's SimCLRTransform, strength 1), a head of
Linear-BatchNorm-ReLU-Linear 128-256-128 (MoCo's without the BatchNorm), predictors of
Linear-BatchNorm-ReLU-Linear 128-256-128, batch 256 (`--batch-size`), crops of 8-100 % of
the image (`--min-scale`), SGD momentum 0.9, weight decay 5e-4
(or, with `--optimizer lars`, lightly's LARS with trust coefficient `--trust`, batch-norm
parameters and biases left out of decay and scaling, as the Barlow Twins and VICReg configs
set it), a cosine learning rate over the planned steps, bf16 autocast for the networks (the losses in
fp32, as the trainer computes them) and channels-last (what `auto`
chooses on the machines measured). As the trainer, the run times its first 20 steps and
then plans as many steps as fit in the budget (at most 20 epochs), keeping `--reserve-s`
for the final evaluation; unlike the trainer it runs no kNN monitor during training.

The evaluation is the trainer's protocol on backbone features: kNN top-1 (k 200, T 0.1,
cosine, against the training split), a linear probe (30 epochs of Adam with decoupled weight
decay 1e-4, lr 1e-2 on a cosine, batch 256, standardised features), precision@1 and MAP@R
of the test split searched against itself (pytorch-metric-learning's AccuracyCalculator),
and k-means NMI (scikit-learn, k 10, 3 restarts) of the normalised test features. Augmentation
runs in one DataLoader worker process (the other core trains). Prints one JSON line.
"""

import argparse
import copy
import json
import math
import time

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score
from torch import nn
from torch.utils.data import DataLoader

from lightly.loss import BarlowTwinsLoss, NegativeCosineSimilarity, NTXentLoss, VICRegLoss
from lightly.loss.hypersphere_loss import HypersphereLoss
from lightly.models.modules import (
    BYOLPredictionHead,
    BYOLProjectionHead,
    MoCoProjectionHead,
    NNCLRPredictionHead,
    NNMemoryBankModule,
    SimCLRProjectionHead,
    SimSiamPredictionHead,
)
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.transforms import SimCLRTransform
from lightly.utils.lars import LARS
from lightly.utils.scheduler import cosine_schedule
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from w1_lightly import MEAN, STD, Views, embed, knn_top1, read_idx, small_cnn

HIDDEN, OUT, FEATURES = 256, 128, 128


def bf16(module, x):
    """`module(x)` under bf16 autocast, in fp32: the networks run in bf16, the losses in
    fp32 outside autocast (as the trainer computes them)."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return module(x).float()


def head():
    return SimCLRProjectionHead(FEATURES, HIDDEN, OUT)


class Method(nn.Module):
    """A method's trained modules and its loss of two batches of views."""

    def __init__(self, name, args):
        super().__init__()
        self.name = name
        self.backbone = small_cnn()
        self.momentum = None
        if name == "moco-v2":
            self.head = MoCoProjectionHead(FEATURES, HIDDEN, OUT)
            self.momentum = args.momentum
            self.criterion = NTXentLoss(temperature=args.temperature,
                                        memory_bank_size=(args.queue_size, OUT))
        elif name == "byol":
            self.head = BYOLProjectionHead(FEATURES, HIDDEN, OUT)
            self.predictor = BYOLPredictionHead(OUT, HIDDEN, OUT)
            self.momentum = args.momentum
            self.criterion = NegativeCosineSimilarity()
        else:
            self.head = head()
        if self.momentum is not None:
            self.key_backbone = copy.deepcopy(self.backbone)
            self.key_head = copy.deepcopy(self.head)
            deactivate_requires_grad(self.key_backbone)
            deactivate_requires_grad(self.key_head)
        if name == "simclr":
            self.criterion = NTXentLoss(temperature=args.temperature)
        elif name == "simsiam":
            self.predictor = SimSiamPredictionHead(OUT, HIDDEN, OUT)
            self.criterion = NegativeCosineSimilarity()
        elif name == "barlow-twins":
            self.criterion = BarlowTwinsLoss(lambda_param=args.lambda_)
        elif name == "hypersphere":
            self.criterion = HypersphereLoss(t=args.temperature, lam=args.lambda_,
                                             alpha=args.alpha)
        elif name == "vicreg":
            self.criterion = VICRegLoss(lambda_param=args.lambda_, mu_param=args.mu,
                                        nu_param=args.nu)
        elif name == "nnclr":
            self.predictor = NNCLRPredictionHead(OUT, HIDDEN, OUT)
            self.bank = NNMemoryBankModule(size=(args.support_size, OUT))
            self.criterion = NTXentLoss(temperature=args.temperature)

    def project(self, x):
        return bf16(lambda v: self.head(self.backbone(v).flatten(1)), x)

    def predict(self, z):
        return bf16(self.predictor, z)

    def key(self, x):
        with torch.no_grad():
            return bf16(lambda v: self.key_head(self.key_backbone(v).flatten(1)), x)

    def before_step(self, step, total):
        if self.momentum is None:
            return
        m = self.momentum
        if self.name == "byol":
            m = cosine_schedule(step, total, self.momentum, 1.0)
        update_momentum(self.backbone, self.key_backbone, m)
        update_momentum(self.head, self.key_head, m)

    def loss(self, x0, x1):
        name = self.name
        if name in ("simclr", "barlow-twins", "vicreg", "hypersphere"):
            return self.criterion(self.project(x0), self.project(x1))
        if name == "moco-v2":  # symmetric, as configs/fmnist-moco.toml
            q0, q1 = self.project(x0), self.project(x1)
            k0, k1 = self.key(x0), self.key(x1)
            return 0.5 * (self.criterion(q0, k1) + self.criterion(q1, k0))
        if name == "byol":
            p0, p1 = self.predict(self.project(x0)), self.predict(self.project(x1))
            t0, t1 = self.key(x0), self.key(x1)
            return 0.5 * (self.criterion(p0, t1) + self.criterion(p1, t0))
        if name == "simsiam":
            z0, z1 = self.project(x0), self.project(x1)
            p0, p1 = self.predict(z0), self.predict(z1)
            return 0.5 * (self.criterion(p0, z1.detach()) + self.criterion(p1, z0.detach()))
        if name == "nnclr":
            z0, z1 = self.project(x0), self.project(x1)
            p0, p1 = self.predict(z0), self.predict(z1)
            n0 = self.bank(z0.detach(), update=False)
            n1 = self.bank(z1.detach(), update=True)
            return 0.5 * (self.criterion(n0, p1) + self.criterion(n1, p0))
        raise ValueError(name)


def linear_probe(train, labels, test, test_labels, classes=10, epochs=30, seed=0):
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    train, test = (train - mean) / std, (test - mean) / std
    generator = torch.Generator().manual_seed(seed)
    probe = nn.Linear(train.shape[1], classes)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=1e-2, weight_decay=1e-4)
    steps = epochs * math.ceil(len(train) / 256)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(epochs):
        for index in torch.randperm(len(train), generator=generator).split(256):
            loss = nn.functional.cross_entropy(probe(train[index]), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    with torch.no_grad():
        return (probe(test).argmax(1) == test_labels).float().mean().item()


def evaluate(backbone, data, seed):
    train = read_idx(f"{data}/train-images-idx3-ubyte.gz")
    test = read_idx(f"{data}/t10k-images-idx3-ubyte.gz")
    labels = torch.from_numpy(read_idx(f"{data}/train-labels-idx1-ubyte.gz").astype(np.int64))
    test_labels = torch.from_numpy(read_idx(f"{data}/t10k-labels-idx1-ubyte.gz").astype(np.int64))
    f_train, f_test = embed(backbone, train, True, True), embed(backbone, test, True, True)
    result = {"knn_top1": knn_top1(f_train, labels, f_test, test_labels)}
    result["linear_probe"] = linear_probe(f_train, labels, f_test, test_labels, seed=seed)
    normalised = nn.functional.normalize(f_test, dim=1).numpy()
    search = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r"),
                                k="max_bin_count", device=torch.device("cpu"))
    found = search.get_accuracy(normalised, test_labels.numpy(), normalised,
                                test_labels.numpy(), ref_includes_query=True)
    result["precision_at_1"] = found["precision_at_1"]
    result["map_at_r"] = found["mean_average_precision_at_r"]
    clusters = KMeans(n_clusters=10, n_init=3, random_state=seed).fit_predict(normalised)
    result["kmeans_nmi"] = normalized_mutual_info_score(test_labels.numpy(), clusters)
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--method", required=True,
                        choices=["simclr", "moco-v2", "byol", "simsiam", "barlow-twins",
                                 "vicreg", "nnclr", "hypersphere"])
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--optimizer", choices=["sgd", "lars"], default="sgd")
    parser.add_argument("--trust", type=float, default=0.02)
    parser.add_argument("--budget-s", type=float, default=720.0)
    parser.add_argument("--reserve-s", type=float, default=60.0)
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--momentum", type=float, default=0.99)
    parser.add_argument("--queue-size", type=int, default=4096)
    parser.add_argument("--support-size", type=int, default=4096)
    parser.add_argument("--lambda", dest="lambda_", type=float, default=None)
    parser.add_argument("--mu", type=float, default=25.0)
    parser.add_argument("--nu", type=float, default=1.0)
    parser.add_argument("--alpha", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--min-scale", type=float, default=0.08,
                        help="the smallest crop, a share of the image (a config's "
                             "`views.crop_scale` lower bound)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.temperature is None:  # the configs' values: the kernel's t for hypersphere
        args.temperature = 2.0 if args.method == "hypersphere" else 0.2
    if args.lambda_ is None:  # each loss's own default weight
        args.lambda_ = {"vicreg": 25.0, "hypersphere": 1.0}.get(args.method, 5e-3)
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    started = time.perf_counter()

    images = read_idx(f"{args.data}/train-images-idx3-ubyte.gz")
    transform = SimCLRTransform(
        input_size=28, cj_strength=1.0, min_scale=args.min_scale, gaussian_blur=0.5,
        random_gray_scale=0.2, normalize={"mean": [MEAN], "std": [STD]},
    )
    loader = DataLoader(Views(images, transform), batch_size=args.batch_size, shuffle=True,
                        drop_last=True, num_workers=1, persistent_workers=True,
                        prefetch_factor=4)
    method = Method(args.method, args).to(memory_format=torch.channels_last)
    trained = [p for p in method.parameters() if p.requires_grad]
    if args.optimizer == "lars":  # weight decay 0 leaves a group out of LARS' scaling
        optimizer = LARS([{"params": [p for p in trained if p.dim() > 1]},
                          {"params": [p for p in trained if p.dim() <= 1], "weight_decay": 0.0}],
                         lr=args.lr, momentum=0.9, weight_decay=5e-4,
                         trust_coefficient=args.trust)
    else:
        optimizer = torch.optim.SGD(trained, lr=args.lr, momentum=0.9, weight_decay=5e-4)
    total = args.max_epochs * len(loader)
    plan = {"total": total}
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, plan["total"]) / plan["total"])))

    step, timed_from, losses = 0, None, []
    while step < plan["total"]:
        for x0, x1 in loader:
            if step == 0:
                timed_from = time.perf_counter()
            x0 = x0.contiguous(memory_format=torch.channels_last)
            x1 = x1.contiguous(memory_format=torch.channels_last)
            method.before_step(step, plan["total"])
            loss = method.loss(x0, x1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            losses.append(loss.item())
            if step == 20:  # the trainer's planning point
                step_s = (time.perf_counter() - timed_from) / 20
                plan["views_per_s"] = 2 * args.batch_size / step_s
                left = args.budget_s - args.reserve_s - (time.perf_counter() - started)
                plan["total"] = min(total, step + max(int(left / step_s), 0))
            if step >= plan["total"]:
                break
    trained_s = time.perf_counter() - started
    result = {"peer": "lightly", "method": args.method, "optimizer": args.optimizer,
              "lr": args.lr, "steps": step,
              "epochs": round(step / len(loader), 2), "train_s": round(trained_s, 1),
              "batch_size": args.batch_size, "min_scale": args.min_scale,
              "views_per_s": round(step * 2 * args.batch_size
                                   / (time.perf_counter() - timed_from), 1),
              "first_20_views_per_s": round(plan["views_per_s"], 1),
              "last_loss": float(np.mean(losses[-20:]))}
    result.update(evaluate(method.backbone, args.data, args.seed))
    result["wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
