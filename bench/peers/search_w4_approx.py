"""Peers of W4's approximate part (crates/bench/src/w4_approx.rs), 2 threads: faiss
IndexHNSWFlat with the same M (16) and efConstruction (100) as ours, searched at the same
efSearch values, and IndexIVFFlat (1024 lists) at several nprobe, on the same 1M x 128
clustered vectors (the formula in w4_approx.rs) and 10k queries. Recall@10 is against
faiss's exact IndexFlatIP. Prints JSON rows named as ours; the build row carries the peak
memory the build adds (VmHWM after resetting it, as ours does).

    python bench/peers/search_w4_approx.py [--small] [--runs 3]
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")

import faiss  # noqa: E402
import numpy as np  # noqa: E402

EF_SEARCH = [10, 16, 32, 64, 128, 256]
NPROBE = [1, 2, 4, 8, 16, 32]
M, EF_CONSTRUCTION, NLIST, TARGET = 16, 100, 1024, 0.95


def h(x, y):
    wave = np.sin(x * 12.9898 + y * 78.233) * 43758.5453
    return (wave - np.floor(wave)) * 2.0 - 1.0


def clustered(first, n):
    j = np.arange(16, dtype=np.float64)[None, :]
    k = np.arange(128, dtype=np.float64)[None, :]
    projection = h(j.T + 3000.25, k + 0.5) / 4.0
    out = []
    for start in range(first, first + n, 65536):
        i = np.arange(start, min(start + 65536, first + n), dtype=np.float64)[:, None]
        c = np.remainder(i, 1000.0)
        z = h(c + 0.25, j + 1000.5) + h(i + 0.75, j + 2000.5) * 0.35
        x = z @ projection + h(i + 0.125, k + 5000.5) * 0.05
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        out.append(x.astype(np.float32))
    return np.concatenate(out)


def vm(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return float(line.split()[1]) / 1024.0
    return None


def peak_added_mib(f):
    before = vm("VmRSS:")
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    result = f()
    return result, max(vm("VmHWM:") - before, 0.0)


def median_ms(runs, f):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        f()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def recall(found, exact):
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact)]))


def row(name, peer, unit, value, higher, note=None, peak=None):
    out = {"workload": "W4", "name": name, "unit": unit, "value": value,
           "higher_is_better": higher, "peer": peer}
    if note:
        out["note"] = note
    if peak is not None:
        out["peak_mib"] = peak
    print(json.dumps(out), flush=True)


def sweep(index, queries, exact, params, set_param, runs, name_of, peer, n_q, exact_ms):
    best = None
    for p in params:
        set_param(p)
        found = {}
        ms = median_ms(runs, lambda: found.setdefault("i", index.search(queries, 10)[1]))
        r = recall(found["i"], exact)
        qps = n_q / (ms / 1e3)
        if name_of:
            row(name_of(p), peer, "queries/s", qps, True,
                f"recall@10 {r:.3f}, {exact_ms / ms:.1f}x exact")
        if r >= TARGET and (best is None or qps > best[0]):
            best = (qps, p, r)
    return best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    faiss.omp_set_num_threads(2)
    n, n_q = (5_000, 200) if args.small else (1_000_000, 10_000)
    size = f"{n}x128"
    database, queries = clustered(0, n), clustered(n, n_q)

    flat = faiss.IndexFlatIP(128)
    flat.add(database)
    start = time.perf_counter()
    exact = flat.search(queries, 10)[1]
    exact_ms = (time.perf_counter() - start) * 1e3
    row(f"exact_top10_qps_{size}", "faiss IndexFlatIP", "queries/s", n_q / (exact_ms / 1e3), True)
    del flat

    def build_hnsw():
        index = faiss.IndexHNSWFlat(128, M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = EF_CONSTRUCTION
        index.add(database)
        return index

    start = time.perf_counter()
    hnsw, peak = peak_added_mib(build_hnsw)
    peer = "faiss IndexHNSWFlat"
    row(f"hnsw_m{M}_build_{size}", peer, "ms", (time.perf_counter() - start) * 1e3, False,
        peak=peak)

    def set_ef(ef):
        hnsw.hnsw.efSearch = ef

    best = sweep(hnsw, queries, exact, EF_SEARCH, set_ef, args.runs,
                 lambda ef: f"hnsw_m{M}_ef{ef}_qps_{size}", peer, n_q, exact_ms)
    if best:
        row(f"approx_qps_at_recall95_{size}", peer, "queries/s", best[0], True,
            f"efSearch {best[1]}: recall@10 {best[2]:.3f}")
    del hnsw

    def build_ivf():
        quantizer = faiss.IndexFlatIP(128)
        index = faiss.IndexIVFFlat(quantizer, 128, NLIST if n > 100_000 else 64,
                                   faiss.METRIC_INNER_PRODUCT)
        index.train(database)
        index.add(database)
        return index, quantizer

    (ivf, _quantizer), _ = peak_added_mib(build_ivf)

    def set_nprobe(p):
        ivf.nprobe = p

    best = sweep(ivf, queries, exact, NPROBE, set_nprobe, args.runs, None, None, n_q, exact_ms)
    if best:
        row(f"approx_qps_at_recall95_{size}", "faiss IndexIVFFlat", "queries/s", best[0], True,
            f"nprobe {best[1]}: recall@10 {best[2]:.3f}")


if __name__ == "__main__":
    main()
