//! Reading all 70 000 Fashion-MNIST images (train + test) from the original gzip IDX files,
//! as Debian's `dataset-fashion-mnist` installs them (`/usr/share/datasets/fashion-mnist`,
//! or `$FASHION_MNIST_DIR`). Skipped, with a message, where the files are absent.

#![allow(clippy::print_stderr)]

use std::path::PathBuf;

use contrastive_data::{Dataset, Split, fashion_mnist};
use criterion::{Criterion, criterion_group, criterion_main};

fn read_fashion_mnist(c: &mut Criterion) {
    let dir = std::env::var_os("FASHION_MNIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/datasets/fashion-mnist"));
    if !dir.join("train-images-idx3-ubyte.gz").exists() {
        eprintln!(
            "no Fashion-MNIST in {}: run `cargo xtask download fashion-mnist`",
            dir.display()
        );
        return;
    }
    c.bench_function("fashion_mnist_read_70k", |b| {
        b.iter(|| {
            let train = fashion_mnist(&dir, Split::Train).expect("train split");
            let test = fashion_mnist(&dir, Split::Test).expect("test split");
            assert_eq!(train.len() + test.len(), 70_000);
            (train, test)
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = read_fashion_mnist
}
criterion_main!(benches);
