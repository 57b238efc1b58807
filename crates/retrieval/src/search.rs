//! Exact k-nearest-neighbour search: batched matrix products and a partial top-k.

use contrastive_tensor::{Kind, Tensor, no_grad};

use crate::error::invalid;
use crate::{Error, Result};

/// How closeness is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Cosine similarity (vectors are L2-normalised first); larger is closer.
    Cosine,
    /// Inner product; larger is closer.
    InnerProduct,
    /// Euclidean distance; smaller is closer (scores are distances).
    L2,
}

impl std::str::FromStr for Metric {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cosine" => Ok(Metric::Cosine),
            "ip" | "inner-product" => Ok(Metric::InnerProduct),
            "l2" => Ok(Metric::L2),
            _ => Err(invalid(
                "metric",
                format!("{s:?} is not one of cosine, ip, l2"),
            )),
        }
    }
}

/// The `k` nearest database rows of each query.
#[derive(Debug)]
pub struct Neighbours {
    /// `[M, k]` similarities (cosine, inner product) or distances (L2), best first.
    pub scores: Tensor,
    /// `[M, k]` int64 row indices into the database.
    pub indices: Tensor,
}

/// A database prepared once for scoring many query chunks against it: normalised for
/// cosine, with its squared norms for L2.
pub(crate) struct Scorer {
    database: Tensor,
    squared_norms: Option<Tensor>,
    metric: Metric,
}

impl Scorer {
    /// Prepares `database` (`f32`) for `metric`.
    pub(crate) fn new(database: &Tensor, metric: Metric) -> Self {
        let database = match metric {
            Metric::Cosine => normalize(database),
            _ => database.shallow_clone(),
        };
        let squared_norms = (metric == Metric::L2).then(|| {
            database
                .square()
                .sum_dim_intlist(1, false, Kind::Float)
                .unsqueeze(0)
        });
        Self {
            database,
            squared_norms,
            metric,
        }
    }

    /// Similarities `[M, N]` of `queries` to the database (for L2: negated squared
    /// distances, so larger is closer in every case).
    pub(crate) fn similarity(&self, queries: &Tensor) -> Tensor {
        match (self.metric, &self.squared_norms) {
            (Metric::Cosine, _) => normalize(queries).matmul(&self.database.tr()),
            (Metric::L2, Some(d2)) => {
                let q2 = queries.square().sum_dim_intlist(1, true, Kind::Float);
                queries.matmul(&self.database.tr()) * 2.0 - q2 - d2
            }
            _ => queries.matmul(&self.database.tr()),
        }
    }
}

/// Rows scaled to unit length (zero rows stay zero).
pub fn normalize(x: &Tensor) -> Tensor {
    x / x.norm_scalaropt_dim(2.0, [1], true).clamp_min(1e-12)
}

/// Exact search of `queries` `[M, D]` in `database` `[N, D]` (both `f32`, on one device):
/// the `k` best rows per query. Queries go through in chunks so that at most about 64 M
/// similarities exist at once; libtorch spreads each product over its threads (or the GPU).
/// `k` larger than the database is clamped to its size.
pub fn search(database: &Tensor, queries: &Tensor, k: usize, metric: Metric) -> Result<Neighbours> {
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
    let chunk = (64 * 1024 * 1024 / d[0]).clamp(1, 4096);
    no_grad(|| {
        let database = database.to_kind(Kind::Float);
        let queries = queries.to_kind(Kind::Float).to_device(database.device());
        let scorer = Scorer::new(&database, metric);
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
    use contrastive_tensor::{Device, seed_all};

    use super::*;

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
        seed_all(11);
        let db = Tensor::randn([500, 16], (Kind::Float, Device::Cpu));
        let q = Tensor::randn([37, 16], (Kind::Float, Device::Cpu));
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
    fn k_is_clamped_and_bad_input_is_refused() {
        let db = Tensor::randn([4, 3], (Kind::Float, Device::Cpu));
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
