"""Peers of W4 (crates/bench/src/w4.rs), 2 threads, median of --runs runs after a warm-up:
faiss IndexFlatIP for exact top-10 inner product (10k queries over 60k x 128 L2-normalised
float32 vectors), and k-means (k = 10, k-means++, 3 restarts) by scikit-learn and faiss on
the same 70k x 128 clustered vectors as ours (the formula in crates/bench/src/w4.rs).
Prints one JSON row per measurement, named as ours. `cargo xtask bench --peers` runs it.

    python bench/peers/search_w4.py [--small] [--runs 5]
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")

import faiss  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score  # noqa: E402


def median_ms(runs, f):
    f()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        f()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def blobs(n, d, k):
    i = np.arange(n, dtype=np.float64)[:, None]
    j = np.arange(d, dtype=np.float64)[None, :]
    centre = np.sin((i % k) * 1.3 + j * 0.7) * 3.0
    wave = np.sin(i * 12.9898 + j * 78.233) * 43758.5453
    return (centre + wave - np.floor(wave) - 0.5).astype(np.float32), (np.arange(n) % k)


def row(name, peer, value, note=None):
    out = {"workload": "W4", "name": name, "unit": "ms", "value": value,
           "higher_is_better": False, "peer": peer}
    if note:
        out["note"] = note
    print(json.dumps(out), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    faiss.omp_set_num_threads(2)
    n_db, n_q = (600, 100) if args.small else (60_000, 10_000)
    rng = np.random.default_rng(0)
    database = rng.standard_normal((n_db, 128), dtype=np.float32)
    queries = rng.standard_normal((n_q, 128), dtype=np.float32)
    faiss.normalize_L2(database)
    faiss.normalize_L2(queries)
    index = faiss.IndexFlatIP(128)
    index.add(database)
    row(f"exact_ip_top10_{n_q}x{n_db}x128", "faiss IndexFlatIP",
        median_ms(args.runs, lambda: index.search(queries, 10)))

    n = 700 if args.small else 70_000
    x, truth = blobs(n, 128, 10)
    name = f"kmeans_k10_{n}x128"
    found = {}

    def sklearn_fit():
        found["sk"] = KMeans(10, init="k-means++", n_init=3, random_state=0).fit_predict(x)

    def faiss_fit():
        km = faiss.Kmeans(128, 10, niter=300, nredo=3, seed=0)
        km.train(x)
        found["faiss"] = km.index.search(x, 1)[1].ravel()

    for key, peer, fit in [("sk", "scikit-learn KMeans", sklearn_fit), ("faiss", "faiss Kmeans", faiss_fit)]:
        ms = median_ms(args.runs, fit)
        labels = found[key]
        note = (f"NMI {normalized_mutual_info_score(truth, labels):.3f}, "
                f"ARI {adjusted_rand_score(truth, labels):.3f}")
        row(name, peer, ms, note)


if __name__ == "__main__":
    main()
