//! One epoch of batches from each sampler over a Fashion-MNIST-sized set (60 000 items,
//! 10 classes), and of the temporal sampler over 1000 videos of 100 frames.

use contrastive_samplers::{MultiView, PkSampler, TemporalSampler};
use criterion::{Criterion, criterion_group, criterion_main};

fn samplers(c: &mut Criterion) {
    let labels: Vec<usize> = (0..60_000).map(|i| i % 10).collect();
    let mut group = c.benchmark_group("sampler_epoch");
    let shuffled = MultiView::new(60_000, 256, true, 0).unwrap();
    group.bench_function("multi_view_60k", |b| b.iter(|| shuffled.epoch(1)));
    let pk = PkSampler::new(&labels, 8, 32, 0).unwrap();
    group.bench_function("pk_8x32_60k", |b| b.iter(|| pk.epoch(1)));
    let temporal = TemporalSampler::new(&vec![100; 1000], 32, 8, 16, 0).unwrap();
    group.bench_function("temporal_32x8_100k_frames", |b| {
        b.iter(|| temporal.epoch(1))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = samplers
}
criterion_main!(benches);
