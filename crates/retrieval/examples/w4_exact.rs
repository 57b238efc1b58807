//! W4 exact search (shared/benchmarks.md): 10k queries, top-10 inner product over 60k x 128
//! L2-normalised vectors, 2 threads. Prints the median of 5 timed runs after a warm-up, in
//! milliseconds, as one JSON line; `bench/peers/search_w4.py` does the same with faiss.
//!
//!     cargo run --release -p contrastive-retrieval --example w4_exact

#![allow(clippy::print_stdout)]

use std::time::Instant;

use contrastive_retrieval::{Metric, normalize, search};
use contrastive_tensor::{Device, Kind, Tensor, seed_all, set_threads};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    set_threads(2)?;
    seed_all(0);
    let database = normalize(&Tensor::randn([60_000, 128], (Kind::Float, Device::Cpu)));
    let queries = normalize(&Tensor::randn([10_000, 128], (Kind::Float, Device::Cpu)));
    search(&database, &queries, 10, Metric::InnerProduct)?;
    let mut times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let found = search(&database, &queries, 10, Metric::InnerProduct)?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
        assert_eq!(found.indices.size(), [10_000, 10]);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{{\"who\": \"ours\", \"workload\": \"exact IP top-10, 10k x 60k x 128\", \"median_ms\": {:.1}}}",
        times[2]
    );
    Ok(())
}
