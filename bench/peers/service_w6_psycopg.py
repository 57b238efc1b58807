"""Peer of W6 (xtask/src/bench/w6.rs): the pgvector queries of `contrastive serve --db`,
issued straight from Python through psycopg 3, to show what the service adds on top of the
database (decoding the upload, the model's forward pass, HTTP).

The same SQL as crates/pgvector's search: in one transaction `SET LOCAL hnsw.ef_search`,
`SET LOCAL hnsw.iterative_scan = strict_order`, then the top 10 by cosine distance. The
query vectors are the stored embeddings of the collection's first N items (the service's
queries are the embeddings of N test images, which the database never sees). At C = 1, 4
and 16 clients (threads, one connection each), while a writer inserts 10 rows every 100 ms
(unit vectors with contents of their own), as the service's passes run with inserts.
Prints one JSON row per measurement, named as ours, with peer "psycopg".

    python bench/peers/service_w6_psycopg.py --dsn postgres://USER@HOST:PORT/DB \
        --collection NAME [--queries 2000] [--ef-search 40]
"""

import argparse
import json
import threading
import time

import numpy as np
import psycopg

K = 10
CONCURRENCY = (1, 4, 16)
INSERT_BATCH = 10
INSERT_EVERY_S = 0.1


def vector_text(v):
    return "[" + ",".join(f"{x:.7g}" for x in v) + "]"


def search(connection, table, ef, vector):
    with connection.transaction():
        connection.execute(f"SET LOCAL hnsw.ef_search = {ef}")
        connection.execute("SET LOCAL hnsw.iterative_scan = strict_order")
        rows = connection.execute(
            f"SELECT id, source, label, content, embedding <=> %s::vector FROM {table} "
            "ORDER BY embedding <=> %s::vector LIMIT %s",
            (vector, vector, K),
        ).fetchall()
    return rows


class Writer(threading.Thread):
    """Inserts INSERT_BATCH rows every INSERT_EVERY_S until stopped; counts what it added."""

    def __init__(self, dsn, table, dim, first):
        super().__init__(daemon=True)
        self.dsn, self.table, self.dim, self.next = dsn, table, dim, first
        self.stop = threading.Event()
        self.added = 0
        self.errors = 0

    def run(self):
        rng = np.random.default_rng(self.next)
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            while not self.stop.wait(INSERT_EVERY_S):
                rows = []
                for _ in range(INSERT_BATCH):
                    v = rng.standard_normal(self.dim)
                    v /= np.linalg.norm(v)
                    name = f"w6-psycopg-{self.next}"
                    rows.append((name, name, None, name, vector_text(v)))
                    self.next += 1
                try:
                    with connection.transaction():
                        with connection.cursor() as cursor:
                            cursor.executemany(
                                f"INSERT INTO {self.table} (id, source, label, content, embedding) "
                                "VALUES (%s, %s, %s, %s, %s::vector) ON CONFLICT DO NOTHING",
                                rows,
                            )
                    self.added += len(rows)
                except psycopg.Error:
                    self.errors += 1


def load(dsn, table, ef, queries, c):
    """Runs every query once over c clients; latencies in ms, errors, seconds."""
    latencies, errors = [], [0]
    lock = threading.Lock()
    cursor = [0]

    def client():
        with psycopg.connect(dsn, autocommit=True) as connection:
            while True:
                with lock:
                    i = cursor[0]
                    cursor[0] += 1
                if i >= len(queries):
                    return
                start = time.perf_counter()
                try:
                    rows = search(connection, table, ef, queries[i])
                    ok = len(rows) == K
                except psycopg.Error:
                    ok = False
                ms = (time.perf_counter() - start) * 1e3
                with lock:
                    if ok:
                        latencies.append(ms)
                    else:
                        errors[0] += 1

    threads = [threading.Thread(target=client) for _ in range(c)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors[0], time.perf_counter() - start


def percentile(values, q):
    """Nearest rank, as xtask's percentile."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, int(np.ceil(q * len(ordered))))
    return ordered[rank - 1]


def row(name, unit, value, higher, note):
    print(json.dumps({"workload": "W6", "name": name, "unit": unit, "value": value,
                      "higher_is_better": higher, "peer": "psycopg", "note": note}),
          flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--collection", required=True)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--ef-search", type=int, default=40)
    args = parser.parse_args()
    table = f"contrastive_items_{args.collection}"
    ef = max(args.ef_search, K)
    with psycopg.connect(args.dsn, autocommit=True) as connection:
        stored = connection.execute(
            f"SELECT embedding::text FROM {table} ORDER BY id LIMIT %s", (args.queries,)
        ).fetchall()
    queries = [text for (text,) in stored]
    if not queries:
        raise SystemExit(f"{table} holds no rows")
    dim = queries[0].count(",") + 1
    for c in CONCURRENCY:
        writer = Writer(args.dsn, table, dim, c * 1_000_000)
        writer.start()
        latencies, errors, seconds = load(args.dsn, table, ef, queries, c)
        writer.stop.set()
        writer.join()
        note = (f"{len(queries)} queries at {c} clients straight to PostgreSQL, {errors} errors; "
                f"{writer.added / seconds:.0f} inserts/s achieved ({writer.errors} failed)")
        row(f"pgvector_hnsw_c{c}_qps", "q/s", len(latencies) / seconds, True, note)
        row(f"pgvector_hnsw_c{c}_p50", "ms", percentile(latencies, 0.5), False, note)
        row(f"pgvector_hnsw_c{c}_p99", "ms", percentile(latencies, 0.99), False, note)


if __name__ == "__main__":
    main()
