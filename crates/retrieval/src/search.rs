//! Exact k-nearest-neighbour search: batched matrix products and a partial top-k.

use std::collections::BinaryHeap;

use contrastive_tensor::{Device, Kind, Tensor, no_grad, with_f32_slice};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{check_finite, invalid};
use crate::prefilter;
use crate::{Error, Result};

/// How closeness is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Cosine similarity (vectors are L2-normalised first); larger is closer.
    Cosine,
    /// Inner product; larger is closer.
    #[serde(rename = "ip")]
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

impl Neighbours {
    /// Neighbours from one ranked list of `(score, row)` per query, best first; a list
    /// shorter than `k` is padded with score NaN and row -1.
    pub(crate) fn from_lists(lists: &[Vec<(f32, i64)>], k: usize) -> Self {
        let padded = lists.iter().flat_map(|list| {
            list.iter()
                .copied()
                .chain(std::iter::repeat((f32::NAN, -1)))
                .take(k)
        });
        let (scores, indices): (Vec<f32>, Vec<i64>) = padded.unzip();
        let shape = [lists.len() as i64, k as i64];
        Self {
            scores: Tensor::from_slice(&scores).view(shape),
            indices: Tensor::from_slice(&indices).view(shape),
        }
    }
}

/// A `[rows, columns]` buffer for one block of scores: the leading rows of `full` (a
/// contiguous view, nothing allocated) when the width matches, else a fresh tensor (only
/// for the last, narrower block of database rows).
pub(crate) fn score_buffer(full: &Tensor, rows: i64, columns: i64) -> Tensor {
    if columns == full.size()[1] {
        full.narrow(0, 0, rows)
    } else {
        Tensor::empty([rows, columns], (full.kind(), full.device()))
    }
}

/// A database prepared once for scoring many query chunks against it, without copying it
/// (it may be a memory-mapped store larger than memory): its inverse norms for cosine,
/// its squared norms for L2, each `[1, N]`.
pub(crate) struct Scorer {
    pub(crate) database: Tensor,
    /// Per row: `1 / |d|` (cosine) or `|d|^2` (L2).
    pub(crate) row_norms: Option<Tensor>,
    pub(crate) metric: Metric,
}

impl Scorer {
    /// Prepares `database` (`f32`) for `metric`.
    pub(crate) fn new(database: &Tensor, metric: Metric) -> Self {
        let squared = || {
            database
                .square()
                .sum_dim_intlist(1, false, Kind::Float)
                .unsqueeze(0)
        };
        let row_norms = match metric {
            Metric::Cosine => Some(squared().sqrt().clamp_min(1e-12).reciprocal()),
            Metric::L2 => Some(squared()),
            Metric::InnerProduct => None,
        };
        Self {
            database: database.shallow_clone(),
            row_norms,
            metric,
        }
    }

    /// Similarities `[M, N]` of `queries` to the database (for L2: negated squared
    /// distances, so larger is closer in every case).
    pub(crate) fn similarity(&self, queries: &Tensor) -> Tensor {
        self.block_similarity(&self.prepare(queries), 0, self.database.size()[0])
            - self.query_offset(queries)
    }

    /// `queries` as the database is: normalised for cosine.
    pub(crate) fn prepare(&self, queries: &Tensor) -> Tensor {
        match self.metric {
            Metric::Cosine => normalize(queries),
            _ => queries.shallow_clone(),
        }
    }

    /// What [`Scorer::similarity`] subtracts per query row: `|q|^2` for L2 (it does not
    /// change the order within a row), else nothing.
    fn query_offset(&self, queries: &Tensor) -> Tensor {
        match self.metric {
            Metric::L2 => queries.square().sum_dim_intlist(1, true, Kind::Float),
            _ => Tensor::zeros([1, 1], (Kind::Float, queries.device())),
        }
    }

    /// Similarities of prepared `queries` to database rows `start .. start + len`, less the
    /// per-query offset (contiguous `[M, len]`).
    fn block_similarity(&self, queries: &Tensor, start: i64, len: i64) -> Tensor {
        let mut out = Tensor::empty([queries.size()[0], len], (Kind::Float, queries.device()));
        self.block_similarity_into(queries, start, len, &mut out);
        out
    }

    /// [`Scorer::block_similarity`] written into `out`, so a search can reuse one buffer
    /// instead of faulting in fresh pages for every block.
    fn block_similarity_into(&self, queries: &Tensor, start: i64, len: i64, out: &mut Tensor) {
        let block = self.database.narrow(0, start, len);
        let _ = queries.mm_out(out, &block.tr());
        match (self.metric, &self.row_norms) {
            (Metric::Cosine, Some(inverse)) => {
                let _ = out.g_mul_(&inverse.narrow(1, start, len));
            }
            (Metric::L2, Some(d2)) => {
                let _ = out.g_mul_scalar_(2.0).g_sub_(&d2.narrow(1, start, len));
            }
            _ => {}
        }
    }
}

/// Rows scaled to unit length (zero rows stay zero).
pub fn normalize(x: &Tensor) -> Tensor {
    x / x.norm_scalaropt_dim(2.0, [1], true).clamp_min(1e-12)
}

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

/// Query rows per block of the CPU search.
pub(crate) const QUERY_BLOCK: i64 = 2048;
/// Database rows per block of the CPU search: a block of scores is 8 MiB, small enough
/// to be read back from the cache it was written to.
pub(crate) const DATABASE_BLOCK: i64 = 1024;

/// The CPU search, as faiss's exhaustive search does it: blocks of queries against blocks
/// of database rows, each a well-shaped matrix product, whose scores stream through a
/// bounded heap per query (one comparison with the query's current k-th best for most
/// scores) on rayon's threads, instead of a full top-k over each query's million scores.
pub(crate) fn search_cpu(scorer: &Scorer, queries: &Tensor, k: usize) -> Neighbours {
    let (m, n) = (queries.size()[0], scorer.database.size()[0]);
    let mut best: Vec<Vec<(f32, i64)>> = Vec::with_capacity(m as usize);
    let full = Tensor::empty(
        [QUERY_BLOCK.min(m), DATABASE_BLOCK.min(n)],
        (Kind::Float, Device::Cpu),
    );
    for q_start in (0..m).step_by(QUERY_BLOCK as usize) {
        let q_len = QUERY_BLOCK.min(m - q_start);
        let block = scorer.prepare(&queries.narrow(0, q_start, q_len));
        let mut heaps: Vec<TopK> = (0..q_len).map(|_| TopK::new(k)).collect();
        for d_start in (0..n).step_by(DATABASE_BLOCK as usize) {
            let d_len = DATABASE_BLOCK.min(n - d_start);
            let mut sim = score_buffer(&full, q_len, d_len);
            scorer.block_similarity_into(&block, d_start, d_len, &mut sim);
            with_f32_slice(&sim, |values| {
                heaps
                    .par_iter_mut()
                    .zip(values.par_chunks(d_len as usize))
                    .for_each(|(heap, row)| heap.offer_row(row, d_start));
            });
        }
        best.extend(heaps.into_iter().map(TopK::into_sorted));
    }
    // For L2 the heaps ranked 2 q.d - |d|^2; the distance is sqrt(|q|^2 - that).
    if scorer.metric == Metric::L2 {
        let q2 =
            Vec::<f32>::try_from(&scorer.query_offset(queries).flatten(0, -1)).expect("f32 norms");
        for (list, q2) in best.iter_mut().zip(q2) {
            for (score, _) in list.iter_mut() {
                *score = (q2 - *score).max(0.0).sqrt();
            }
        }
    }
    Neighbours::from_lists(&best, k)
}

/// A score and its row, ordered so that the heap's top is the worst kept: lower score, and
/// among equal scores the later row.
#[derive(Clone, Copy, PartialEq)]
struct Kept(f32, i64);

impl Eq for Kept {}

impl PartialOrd for Kept {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Kept {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
    }
}

/// The `k` best scores seen so far for one query.
struct TopK {
    k: usize,
    heap: BinaryHeap<Kept>,
}

impl TopK {
    fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    /// Offers the scores of database rows `first ..`. Once the heap is full, a run of 16
    /// scores is looked at one by one only when one of them (a vectorised test) beats the
    /// current k-th best, which for most runs it does not.
    fn offer_row(&mut self, row: &[f32], first: i64) {
        const RUN: usize = 16;
        for (r, run) in row.chunks(RUN).enumerate() {
            if self.heap.len() == self.k {
                let worst = self.heap.peek().expect("k >= 1").0;
                // A branch-free `any`, which the compiler turns into vector compares.
                if !run.iter().fold(false, |hit, &v| hit | (v > worst)) {
                    continue;
                }
            }
            for (i, &score) in run.iter().enumerate() {
                self.offer(score, first + (r * RUN + i) as i64);
            }
        }
    }

    fn offer(&mut self, score: f32, row: i64) {
        if self.heap.len() == self.k {
            // Rows arrive in ascending order, so an equal score never displaces.
            if score <= self.heap.peek().expect("k >= 1").0 || score.is_nan() {
                return;
            }
            self.heap.pop();
        }
        self.heap.push(Kept(score, row));
    }

    /// Best first.
    fn into_sorted(self) -> Vec<(f32, i64)> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|Kept(s, i)| (s, i))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use contrastive_tensor::seeded;

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
