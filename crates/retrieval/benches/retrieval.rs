//! Exact search (1000 queries over 60 000 x 128, top-10, each metric), k-means (k = 10 over
//! 10 000 x 128) and the weighted kNN vote (1000 queries against 60 000).

use contrastive_retrieval::{KMeans, KnnClassifier, Metric, normalize, search};
use contrastive_tensor::{Device, Kind, Tensor, seed_all};
use criterion::{Criterion, criterion_group, criterion_main};

fn retrieval(c: &mut Criterion) {
    seed_all(0);
    let cpu = (Kind::Float, Device::Cpu);
    let database = normalize(&Tensor::randn([60_000, 128], cpu));
    let queries = normalize(&Tensor::randn([1000, 128], cpu));
    let mut group = c.benchmark_group("retrieval");
    for (name, metric) in [
        ("search_cosine_1k_x_60k", Metric::Cosine),
        ("search_ip_1k_x_60k", Metric::InnerProduct),
        ("search_l2_1k_x_60k", Metric::L2),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| search(&database, &queries, 10, metric).unwrap())
        });
    }
    let points = Tensor::randn([10_000, 128], cpu);
    group.bench_function("kmeans_k10_10k", |b| {
        b.iter(|| KMeans::new(10, 0).fit(&points).unwrap())
    });
    let labels = Tensor::arange(60_000, (Kind::Int64, Device::Cpu)).remainder(10);
    let knn = KnnClassifier::new(200, 0.1).unwrap();
    group.bench_function("knn_200_1k_x_60k", |b| {
        b.iter(|| knn.predict(&database, &labels, &queries, 10).unwrap())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = retrieval
}
criterion_main!(benches);
