//! W4: exact top-10 inner-product search (10k queries over 60k x 128 normalised vectors)
//! and k-means (k = 10, k-means++, 3 restarts) over 70k x 128 clustered vectors. The peer
//! is `bench/peers/search_w4.py` (faiss `IndexFlatIP`, scikit-learn and faiss k-means).
//!
//! The clustered vectors come from a formula both sides evaluate alike, so the peer
//! clusters the same points: row `i` belongs to blob `i % 10`, whose centre has coordinate
//! `3 sin(1.3 k + 0.7 j)` in dimension `j`, plus `frac(sin(12.9898 i + 78.233 j) 43758.5453)
//! - 0.5` as noise.

use contrastive_retrieval::{KMeans, Metric, ari, nmi, normalize, search};
use contrastive_tensor::{Device, Kind, Tensor, seed_all};

use crate::{Row, Scale, try_median_ms};

/// Rows of `k`-blob clustered vectors `[n, d]` and their blobs, by the formula above.
pub fn blobs(n: i64, d: i64, k: i64) -> (Tensor, Vec<usize>) {
    let cpu = (Kind::Double, Device::Cpu);
    let i = Tensor::arange(n, cpu).unsqueeze(1);
    let j = Tensor::arange(d, cpu).unsqueeze(0);
    let blob = i.remainder(k as f64);
    let centre = (blob * 1.3 + &j * 0.7).sin() * 3.0;
    let wave = (&i * 12.9898 + &j * 78.233).sin() * 43_758.545_3;
    let noise = &wave - wave.floor() - 0.5;
    let labels = (0..n).map(|r| (r % k) as usize).collect();
    ((centre + noise).to_kind(Kind::Float), labels)
}

/// The W4 rows: exact search time and k-means time (with its NMI and ARI as a note).
pub fn rows(scale: Scale, runs: usize) -> anyhow::Result<Vec<Row>> {
    seed_all(0);
    let cpu = (Kind::Float, Device::Cpu);
    let (n_db, n_q) = scale.pick((60_000, 10_000), (600, 100));
    let database = normalize(&Tensor::randn([n_db, 128], cpu));
    let queries = normalize(&Tensor::randn([n_q, 128], cpu));
    let search_ms = try_median_ms(runs, || {
        search(&database, &queries, 10, Metric::InnerProduct).map(|_| ())
    })?;
    let name = format!("exact_ip_top10_{n_q}x{n_db}x128");

    let n = scale.pick(70_000, 700);
    let (x, truth) = blobs(n, 128, 10);
    let mut labels = Vec::new();
    let kmeans_ms = try_median_ms(runs, || {
        labels = KMeans::new(10, 0).fit(&x)?.labels;
        Ok::<(), contrastive_retrieval::Error>(())
    })?;
    let mut kmeans = Row::ms("W4", &format!("kmeans_k10_{n}x128"), kmeans_ms);
    kmeans.note = Some(format!(
        "NMI {:.3}, ARI {:.3}",
        nmi(&truth, &labels)?,
        ari(&truth, &labels)?
    ));
    Ok(vec![Row::ms("W4", &name, search_ms), kmeans])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_separable_and_the_small_rows_run() {
        let (x, labels) = blobs(50, 8, 5);
        assert_eq!(x.size(), [50, 8]);
        assert_eq!(labels[7], 2);
        // Noise is within half a unit of the blob centre.
        let (again, _) = blobs(50, 8, 5);
        assert!(x.equal(&again), "the formula is deterministic");
        let rows = rows(Scale::Small, 1).unwrap();
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r.value > 0.0 && !r.higher_is_better));
        let note = rows[1].note.as_deref().unwrap();
        assert!(note.starts_with("NMI 1.000"), "{note}");
    }
}
