//! Benchmark W2 (`../shared/benchmarks.md`): augmentation throughput in views per second, on
//! 1 and 2 threads. The torchvision peer is `bench/peers/augment_w2.py`.
//!
//! `cargo run --release -p contrastive-augment --example w2`

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::Instant;

use contrastive_augment::{Image, MultiViewPipeline, Transform, presets};

fn images(n: usize, side: usize, channels: usize) -> Vec<Image> {
    (0..n)
        .map(|i| {
            Image::from_shape_fn((side, side, channels), |(y, x, c)| {
                ((y * 31 + x * 17 + c * 71 + i * 13) % 256) as u8
            })
        })
        .collect()
}

fn views_per_second(pipeline: &MultiViewPipeline, batch: &[Image], threads: usize) -> f64 {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let items: Vec<usize> = (0..batch.len()).collect();
    pool.install(|| pipeline.apply(batch, &items, 0).unwrap());
    let mut rates: Vec<f64> = (1..=5u64)
        .map(|epoch| {
            let start = Instant::now();
            pool.install(|| pipeline.apply(batch, &items, epoch).unwrap());
            (batch.len() * pipeline.view_count()) as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[2]
}

fn main() {
    println!("workload,threads,views_per_s");
    let workloads: Vec<(&str, Arc<dyn Transform>, Vec<Image>)> = vec![
        (
            "w1_28x28_gray",
            Arc::new(presets::w1().unwrap()),
            images(2048, 28, 1),
        ),
        (
            "simclr_32x32_rgb_blur",
            Arc::new(presets::simclr(32, 1.0, true).unwrap()),
            images(1024, 32, 3),
        ),
        (
            "simclr_224_from_256_rgb_blur",
            Arc::new(presets::simclr(224, 1.0, true).unwrap()),
            images(32, 256, 3),
        ),
    ];
    for (name, transform, batch) in workloads {
        let pipeline = MultiViewPipeline::new(vec![transform.clone(), transform], 0);
        for threads in [1, 2] {
            println!(
                "{name},{threads},{:.0}",
                views_per_second(&pipeline, &batch, threads)
            );
        }
    }
}
