//! Scoring a database against queries: the metrics, the prepared database ([`Scorer`]),
//! and the exact CPU search (blocks of matrix products streaming through a bounded heap per
//! query), which [`crate::search`] and the bf16 prefilter both build on.

use std::collections::BinaryHeap;

use contrastive_tensor::{Device, Kind, Tensor, with_f32_slice};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::invalid;
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
