"""Peer of crates/retrieval/examples/w4_exact.rs: faiss IndexFlatIP, 10k queries, top-10
over 60k x 128 L2-normalised float32 vectors, 2 threads; median of 5 runs after a warm-up.

    ~/.cache/contrastive/torch-2.13.0/bin/python bench/peers/search_w4.py
"""

import json
import statistics
import time

import faiss
import numpy as np

faiss.omp_set_num_threads(2)
rng = np.random.default_rng(0)
database = rng.standard_normal((60_000, 128), dtype=np.float32)
queries = rng.standard_normal((10_000, 128), dtype=np.float32)
faiss.normalize_L2(database)
faiss.normalize_L2(queries)
index = faiss.IndexFlatIP(128)
index.add(database)
index.search(queries, 10)
times = []
for _ in range(5):
    start = time.perf_counter()
    index.search(queries, 10)
    times.append((time.perf_counter() - start) * 1e3)
print(json.dumps({"who": "faiss IndexFlatIP", "median_ms": round(statistics.median(times), 1)}))
