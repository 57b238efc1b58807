//! W4, approximate part: 1M x 128 clustered, L2-normalised vectors, 10k queries, top-10 by
//! cosine. Our [`HnswIndex`] against exact search: build time and the peak memory it adds,
//! then queries/s and recall@10 at several `ef_search`, and the best queries/s at a
//! recall@10 of at least 0.95. The peer is `bench/peers/search_w4_approx.py` (faiss
//! `IndexHNSWFlat` with the same `M` and `efConstruction`, and `IndexIVFFlat`).
//!
//! The vectors come from a formula both sides evaluate alike (in `f64`, then rounded), so
//! the peer indexes the same points. With the hash `h(x, y) = 2 frac(43758.5453 sin(12.9898 x
//! + 78.233 y)) - 1`, row `i` of cluster `c = i mod 1000` has latent coordinates
//! `z_j = h(c + 0.25, j + 1000.5) + 0.35 h(i + 0.75, j + 2000.5)` for `j < 16`, and is
//! `x_k = sum_j z_j h(j + 3000.25, k + 0.5) / 4 + 0.05 h(i + 0.125, k + 5000.5)`, then
//! normalised: a thousand clusters on a 16-dimensional subspace with a little noise in
//! every direction, like real embeddings. Queries are rows `n .. n + 10 000`.

use contrastive_retrieval::{HnswConfig, HnswIndex, Metric, neighbour_recall, normalize, search};
use contrastive_tensor::{Device, Kind, Tensor, no_grad};

use crate::{Row, Scale, median_ms, peak_added_mib};

/// `ef_search` values measured.
pub const EF_SEARCH: [usize; 6] = [10, 16, 32, 64, 128, 256];
/// The recall the headline row asks for.
pub const TARGET_RECALL: f64 = 0.95;
/// Links per node (`M`) and `ef_construction`, for ours and faiss alike.
pub const M: usize = 16;
/// See [`M`].
pub const EF_CONSTRUCTION: usize = 100;

fn hash(x: &Tensor, y: &Tensor) -> Tensor {
    let wave = (x * 12.9898 + y * 78.233).sin() * 43_758.545_3;
    (&wave - wave.floor()) * 2.0 - 1.0
}

/// Rows `first .. first + n` of the clustered vectors (see the module docs), `[n, 128]`.
pub fn clustered(first: i64, n: i64) -> Tensor {
    const LATENT: i64 = 16;
    const CHUNK: i64 = 65_536;
    let cpu = (Kind::Double, Device::Cpu);
    let j = Tensor::arange(LATENT, cpu).unsqueeze(0);
    let k = Tensor::arange(128, cpu).unsqueeze(0);
    let projection = hash(&(j.tr() + 3000.25), &(&k + 0.5)) / 4.0;
    let chunks: Vec<Tensor> = (first..first + n)
        .step_by(CHUNK as usize)
        .map(|start| {
            let len = CHUNK.min(first + n - start);
            let i = Tensor::arange_start(start, start + len, cpu).unsqueeze(1);
            let c = i.remainder(1000.0);
            let z = hash(&(c + 0.25), &(&j + 1000.5)) + hash(&(&i + 0.75), &(&j + 2000.5)) * 0.35;
            let x = z.matmul(&projection) + hash(&(&i + 0.125), &(&k + 5000.5)) * 0.05;
            normalize(&x).to_kind(Kind::Float)
        })
        .collect();
    Tensor::cat(&chunks, 0)
}

/// The approximate-search rows (the index is built once; searches are medians of `runs`).
pub fn rows(scale: Scale, runs: usize) -> anyhow::Result<Vec<Row>> {
    let (n, n_q) = scale.pick((1_000_000, 10_000), (5_000, 200));
    let size = format!("{n}x128");
    let (database, queries) = no_grad(|| (clustered(0, n), clustered(n, n_q)));
    let mut exact = None;
    let exact_ms = median_ms(1, || {
        exact = Some(search(&database, &queries, 10, Metric::Cosine));
    });
    let exact = exact.expect("ran")?.indices;
    let qps = |ms: f64| n_q as f64 / (ms / 1e3);
    let mut rows = vec![Row::rate(
        "W4",
        &format!("exact_top10_qps_{size}"),
        "queries/s",
        qps(exact_ms),
    )];

    let config = HnswConfig::default()
        .with_m(M)
        .with_ef_construction(EF_CONSTRUCTION);
    let mut built = None;
    let mut build_ms = 0.0;
    let peak = peak_added_mib(|| {
        let start = std::time::Instant::now();
        built = Some(HnswIndex::build(&database, config));
        build_ms = start.elapsed().as_secs_f64() * 1e3;
    });
    let index = built.expect("ran")?;
    let mut build = Row::ms("W4", &format!("hnsw_m{M}_build_{size}"), build_ms);
    build.peak_mib = peak;
    build.note = Some(format!(
        "index {:.0} MiB",
        index.memory_bytes() as f64 / (1 << 20) as f64
    ));
    rows.push(build);

    let mut best: Option<(f64, usize, f64)> = None;
    for ef in EF_SEARCH {
        let mut found = None;
        let ms = median_ms(runs, || found = Some(index.search_with(&queries, 10, ef)));
        let r = neighbour_recall(&found.expect("ran")?.indices, &exact)?;
        let mut row = Row::rate(
            "W4",
            &format!("hnsw_m{M}_ef{ef}_qps_{size}"),
            "queries/s",
            qps(ms),
        );
        row.note = Some(format!("recall@10 {r:.3}, {:.1}x exact", exact_ms / ms));
        rows.push(row);
        if r >= TARGET_RECALL && best.is_none_or(|(q, _, _)| qps(ms) > q) {
            best = Some((qps(ms), ef, r));
        }
    }
    if let Some((q, ef, r)) = best {
        let mut row = Row::rate(
            "W4",
            &format!("approx_qps_at_recall95_{size}"),
            "queries/s",
            q,
        );
        row.note = Some(format!("HNSW ef {ef}: recall@10 {r:.3}"));
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vectors_are_clustered_and_the_small_rows_run() {
        let x = clustered(0, 3000);
        assert_eq!(x.size(), [3000, 128]);
        assert!(x.equal(&clustered(0, 3000)), "the formula is deterministic");
        assert!(
            clustered(2000, 10).equal(&x.narrow(0, 2000, 10)),
            "rows do not depend on the chunk"
        );
        // Members of one cluster are closer to each other than to other clusters.
        let sim = x.matmul(&x.tr());
        let same = sim.double_value(&[0, 1000]);
        let other = sim.double_value(&[0, 1]);
        assert!(same > other, "{same} vs {other}");
        let rows = rows(Scale::Small, 1).unwrap();
        let best = rows
            .iter()
            .find(|r| r.name.starts_with("approx_qps_at_recall95"))
            .unwrap();
        assert!(best.value > 0.0, "{best:?}");
        assert!(
            rows.iter()
                .any(|r| r.name.starts_with("hnsw_m16_build") && r.note.is_some())
        );
    }
}
