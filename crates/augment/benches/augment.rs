//! Augmentation operations one by one on a 224 x 224 RGB image, and the W1 two-view
//! pipeline over a batch of 256 Fashion-MNIST-sized images on 2 threads.

use std::sync::Arc;

use contrastive_augment::{Image, MultiViewPipeline, presets};
use criterion::{Criterion, criterion_group, criterion_main};

fn image(side: usize, channels: usize, seed: usize) -> Image {
    Image::from_shape_fn((side, side, channels), |(y, x, c)| {
        ((y * 31 + x * 17 + c * 71 + seed * 13) % 256) as u8
    })
}

fn ops(c: &mut Criterion) {
    let source = image(224, 3, 0);
    let mut group = c.benchmark_group("augment_224");
    group.bench_function("resize_to_112", |b| {
        b.iter(|| contrastive_augment::resize(&source, 112, 112).unwrap())
    });
    group.bench_function("gaussian_blur_k23", |b| {
        b.iter(|| contrastive_augment::gaussian_blur(&source, 23, 1.5).unwrap())
    });
    group.bench_function("adjust_hue", |b| {
        b.iter(|| contrastive_augment::adjust_hue(&source, 0.1).unwrap())
    });
    group.bench_function("rotate_30", |b| {
        b.iter(|| contrastive_augment::rotate(&source, 30.0, &[0, 0, 0]).unwrap())
    });
    group.finish();
}

fn pipeline(c: &mut Criterion) {
    let batch: Vec<Image> = (0..256).map(|i| image(28, 1, i)).collect();
    let w1 = Arc::new(presets::ViewRecipe::w1().build().unwrap());
    let pipeline = MultiViewPipeline::new(vec![w1.clone(), w1], 0);
    let items: Vec<usize> = (0..batch.len()).collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    c.bench_function("w1_pipeline_256x2_views", |b| {
        b.iter(|| pool.install(|| pipeline.apply(&batch, &items, 0).unwrap()))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = ops, pipeline
}
criterion_main!(benches);
