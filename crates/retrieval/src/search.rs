//! Exact k-nearest-neighbour search: batched matrix products and a partial top-k.

use contrastive_tensor::{Device, Kind, Tensor, no_grad};

use crate::error::{check_finite, invalid};
use crate::prefilter;
pub use crate::scoring::{Metric, Neighbours, normalize};
use crate::scoring::{Scorer, search_cpu};
use crate::{Error, Result};

/// Exact search of `queries` `[M, D]` in `database` `[N, D]` (both `f32`, on one device):
/// the `k` best rows per query. On the CPU, blocks of queries meet blocks of database rows
/// in matrix products whose scores stream through a bounded heap per query; on a GPU,
/// chunks of queries meet the whole database (at most about 64 M similarities at once) and
/// a top-k. Equal scores keep the lower row first.
/// `k` larger than the database is clamped to its size. A row of either holding NaN or
/// infinity is an [`Error::NonFinite`] naming it.
pub fn search(database: &Tensor, queries: &Tensor, k: usize, metric: Metric) -> Result<Neighbours> {
    check_finite("database", database)?;
    search_finite_database(database, queries, k, metric)
}

/// [`search`] of a database known to be finite (an embedding store checks its rows when
/// they come in, so its searches need not read them all again).
pub(crate) fn search_finite_database(
    database: &Tensor,
    queries: &Tensor,
    k: usize,
    metric: Metric,
) -> Result<Neighbours> {
    check_finite("queries", queries)?;
    let (d, q) = (database.size(), queries.size());
    if d.len() != 2 || q.len() != 2 || d[1] != q[1] {
        return Err(Error::Shape {
            op: "search",
            message: format!("expected database [N, D] and queries [M, D], got {d:?} and {q:?}"),
        });
    }
    if d[0] == 0 {
        return Err(Error::Shape {
            op: "search",
            message: "the database is empty".into(),
        });
    }
    if k == 0 {
        return Err(invalid("k", "must be at least 1"));
    }
    let k = (k as i64).min(d[0]);
    no_grad(|| {
        let database = database.to_kind(Kind::Float);
        let queries = queries.to_kind(Kind::Float).to_device(database.device());
        let scorer = Scorer::new(&database, metric);
        if database.device() == Device::Cpu {
            return Ok(if prefilter::applies(metric, k as usize, q[0], d[0]) {
                prefilter::search_bf16(&scorer, &queries, k as usize)
            } else {
                search_cpu(&scorer, &queries, k as usize)
            });
        }
        let chunk = (64 * 1024 * 1024 / d[0]).clamp(1, 4096);
        let (mut scores, mut indices) = (Vec::new(), Vec::new());
        let mut start = 0;
        while start < q[0] {
            let len = chunk.min(q[0] - start);
            let sim = scorer.similarity(&queries.narrow(0, start, len));
            let (top, index) = sim.topk(k, 1, true, true);
            scores.push(if metric == Metric::L2 {
                (-top).clamp_min(0.0).sqrt()
            } else {
                top
            });
            indices.push(index);
            start += len;
        }
        Ok(Neighbours {
            scores: Tensor::cat(&scores, 0),
            indices: Tensor::cat(&indices, 0),
        })
    })
}

#[cfg(test)]
mod tests {
    use contrastive_tensor::seeded;

    use super::*;
    use crate::scoring::{DATABASE_BLOCK, QUERY_BLOCK};

    /// Brute force, one query at a time, in f64.
    fn reference(db: &Tensor, q: &Tensor, k: i64, metric: Metric) -> Tensor {
        let db = db.to_kind(Kind::Double);
        let q = q.to_kind(Kind::Double);
        let rows: Vec<Tensor> = (0..q.size()[0])
            .map(|i| {
                let qi = q.get(i).unsqueeze(0);
                let s = match metric {
                    Metric::InnerProduct => (&db * &qi).sum_dim_intlist(1, false, Kind::Double),
                    Metric::Cosine => {
                        (normalize(&db) * normalize(&qi)).sum_dim_intlist(1, false, Kind::Double)
                    }
                    Metric::L2 => -(&db - &qi).square().sum_dim_intlist(1, false, Kind::Double),
                };
                s.topk(k, 0, true, true).1
            })
            .collect();
        Tensor::stack(&rows, 0)
    }

    #[test]
    fn every_metric_matches_brute_force() {
        let (db, q) = seeded(11, || {
            let cpu = (Kind::Float, Device::Cpu);
            (Tensor::randn([500, 16], cpu), Tensor::randn([37, 16], cpu))
        });
        for metric in [Metric::Cosine, Metric::InnerProduct, Metric::L2] {
            let found = search(&db, &q, 5, metric).unwrap();
            assert!(
                found.indices.equal(&reference(&db, &q, 5, metric)),
                "{metric:?}"
            );
        }
        // L2 scores are distances, ascending.
        let found = search(&db, &q, 3, Metric::L2).unwrap();
        let first = found.indices.get(0).get(0).int64_value(&[]);
        let expected = (db.get(first) - q.get(0)).norm().double_value(&[]);
        assert!((found.scores.get(0).get(0).double_value(&[]) - expected).abs() < 1e-3);
    }

    #[test]
    fn blocks_of_queries_and_rows_give_the_full_top_k() {
        let (db, q) = seeded(12, || {
            let cpu = (Kind::Float, Device::Cpu);
            let db = Tensor::randn([DATABASE_BLOCK * 2 + 77, 8], cpu);
            (db, Tensor::randn([QUERY_BLOCK + 5, 8], cpu))
        });
        for metric in [Metric::InnerProduct, Metric::L2] {
            let found = search(&db, &q, 7, metric).unwrap();
            let scorer = Scorer::new(&db, metric);
            let (top, index) = scorer.similarity(&q).topk(7, 1, true, true);
            assert!(found.indices.equal(&index), "{metric:?}");
            let expected = if metric == Metric::L2 {
                (-top).sqrt()
            } else {
                top
            };
            assert!(
                found.scores.allclose(&expected, 1e-4, 1e-4, false),
                "{metric:?}"
            );
        }
    }

    #[test]
    fn k_is_clamped_and_bad_input_is_refused() {
        let db = seeded(17, || Tensor::randn([4, 3], (Kind::Float, Device::Cpu)));
        let found = search(&db, &db, 10, Metric::Cosine).unwrap();
        assert_eq!(found.indices.size(), [4, 4]);
        // Each vector is its own nearest neighbour.
        assert!(
            found
                .indices
                .select(1, 0)
                .equal(&Tensor::arange(4, (Kind::Int64, Device::Cpu)))
        );
        let empty = Tensor::zeros([0, 3], (Kind::Float, Device::Cpu));
        assert!(
            search(&empty, &db, 1, Metric::L2)
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        let wide = Tensor::zeros([2, 5], (Kind::Float, Device::Cpu));
        assert!(search(&db, &wide, 1, Metric::L2).is_err());
        assert!("hamming".parse::<Metric>().is_err());
    }
}
