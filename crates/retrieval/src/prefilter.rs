//! Exact inner-product and cosine search through a bf16 prefilter, for CPUs with native
//! bf16 matrix products (twice the fp32 rate here).
//!
//! Scores are first computed in bf16. Rounding the inputs to bf16 (8 significant bits)
//! moves each product by at most `2^-7 |q_i d_i|`, accumulation is in fp32, and rounding the
//! output moves it by at most `2^-8` of its size, so the bf16 score `s` of a query `q` and a
//! row `d` is within `(2^-7 + 2^-16) |q| |d| + 2^-8 |s|` of the fp32 score. Each
//! query keeps the k-th best lower bound `tau` seen so far and every row whose upper bound
//! reaches it; since `tau` never exceeds the true k-th best score, the true top k are among
//! the kept rows, which are then scored again in fp32. The answer is the fp32 search's.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use contrastive_tensor::{Device, Kind, Tensor, with_bf16_bits, with_f32_slice};
use rayon::prelude::*;

use crate::scoring::{DATABASE_BLOCK, Metric, Neighbours, QUERY_BLOCK, Scorer, score_buffer};

/// The bound on `|bf16 score - fp32 score|` is `INPUT |q| |d| + OUTPUT |bf16 score|`: input
/// rounding and fp32 accumulation (`2^-7 + 2^-16`), and output rounding (`2^-8`), each with
/// a 2 % margin for the norms' own rounding.
const INPUT: f32 = (1.0 / 128.0 + 1.0 / 65536.0) * 1.02;
/// See [`INPUT`].
const OUTPUT: f32 = (1.0 / 256.0) * 1.02;

/// The largest `k` taken through the prefilter (beyond it the kept rows grow large).
const MAX_K: usize = 1024;

/// Whether the prefilter serves this search: inner product or cosine, a `k` it handles,
/// enough work to repay it, and native bf16 products.
pub(crate) fn applies(metric: Metric, k: usize, queries: i64, rows: i64) -> bool {
    metric != Metric::L2
        && k <= MAX_K
        && queries * rows >= 1 << 24
        && contrastive_tensor::cpu_has_native_bf16()
}

/// A score as an orderable key.
#[derive(Clone, Copy, PartialEq)]
struct Key(f32);

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// One query's state: the `k` best lower bounds (a min-heap, so its top is the k-th best)
/// and the rows whose upper bound reached the k-th best lower bound when they were seen.
struct Candidates {
    k: usize,
    lower: BinaryHeap<Reverse<Key>>,
    kept: Vec<(i64, f32)>,
}

impl Candidates {
    fn new(k: usize) -> Self {
        Self {
            k,
            lower: BinaryHeap::with_capacity(k + 1),
            kept: Vec::new(),
        }
    }

    /// The k-th best lower bound so far (-inf before `k` rows).
    fn tau(&self) -> f32 {
        if self.lower.len() < self.k {
            f32::NEG_INFINITY
        } else {
            self.lower.peek().expect("k >= 1").0.0
        }
    }

    /// Offers bf16 scores of rows `first ..`; the bound of row `first + j` for this query is
    /// `margin[j] * q_norm + OUTPUT |score|`, at most `widest`. Runs of 16 whose scores all fall short of
    /// `tau - widest` are skipped after one vectorised test.
    fn offer_row(&mut self, bits: &[u16], margin: &[f32], q_norm: f32, widest: f32, first: i64) {
        const RUN: usize = 16;
        let widen = |b: u16| f32::from_bits((b as u32) << 16);
        for (r, run) in bits.chunks(RUN).enumerate() {
            let floor = self.tau() - widest;
            if !run.iter().fold(false, |hit, &b| hit | (widen(b) >= floor)) {
                continue;
            }
            for (i, &b) in run.iter().enumerate() {
                let j = r * RUN + i;
                let score = widen(b);
                let m = margin[j] * q_norm + OUTPUT * score.abs();
                if score + m < self.tau() || score.is_nan() {
                    continue;
                }
                self.kept.push((first + j as i64, score + m));
                let low = Key(score - m);
                if self.lower.len() < self.k {
                    self.lower.push(Reverse(low));
                } else if low > self.lower.peek().expect("k >= 1").0 {
                    self.lower.pop();
                    self.lower.push(Reverse(low));
                }
            }
        }
        if self.kept.len() > 8 * self.k + 64 {
            let tau = self.tau();
            self.kept.retain(|&(_, upper)| upper >= tau);
        }
    }
}

/// The exact top `k` of each query (see the module docs); the database must be contiguous.
pub(crate) fn search_bf16(scorer: &Scorer, queries: &Tensor, k: usize) -> Neighbours {
    let database = scorer.database.contiguous();
    let (m, n, d) = (queries.size()[0], database.size()[0], database.size()[1]);
    let width = DATABASE_BLOCK.min(n);
    // Row scales (cosine: 1 / |d|, which the scorer already has) and the rows' norms after
    // scaling: 1 for cosine (its rounding is inside the bound's margin), measured for ip.
    let scale = scorer.row_norms.as_ref().map(|r| r.flatten(0, -1));
    let row_norm = match &scale {
        Some(inverse) => inverse.ones_like(),
        None => database.norm_scalaropt_dim(2.0, [1], false),
    };
    let margins = Vec::<f32>::try_from(&(row_norm * f64::from(INPUT))).expect("f32 norms");
    let prepared = scorer.prepare(queries).contiguous();
    let query_norms =
        Vec::<f32>::try_from(&prepared.norm_scalaropt_dim(2.0, [1], false)).expect("f32 norms");
    let full = Tensor::empty([QUERY_BLOCK.min(m), width], (Kind::BFloat16, Device::Cpu));
    let mut all: Vec<Candidates> = Vec::with_capacity(m as usize);
    for q_start in (0..m).step_by(QUERY_BLOCK as usize) {
        let q_len = QUERY_BLOCK.min(m - q_start);
        let block = prepared.narrow(0, q_start, q_len).to_kind(Kind::BFloat16);
        let mut states: Vec<Candidates> = (0..q_len).map(|_| Candidates::new(k)).collect();
        let norms = &query_norms[q_start as usize..(q_start + q_len) as usize];
        for d_start in (0..n).step_by(DATABASE_BLOCK as usize) {
            let d_len = DATABASE_BLOCK.min(n - d_start);
            let rows = database.narrow(0, d_start, d_len);
            let rows = match &scale {
                Some(inverse) => rows * inverse.narrow(0, d_start, d_len).unsqueeze(1),
                None => rows,
            };
            let sim = score_buffer(&full, q_len, d_len);
            let _ = block.mm_out(&sim, &rows.to_kind(Kind::BFloat16).tr());
            let margin = &margins[d_start as usize..(d_start + d_len) as usize];
            // The largest bound, as |bf16 score| <= (1 + 2^-7)(1 + 2^-8) |q| |d| < 1.02 |q| |d|.
            let widest =
                margin.iter().fold(0.0f32, |w, &m| w.max(m)) * (1.0 + OUTPUT * 1.02 / INPUT);
            with_bf16_bits(&sim, |bits| {
                states
                    .par_iter_mut()
                    .zip(bits.par_chunks(d_len as usize))
                    .zip(norms.par_iter())
                    .for_each(|((state, row), &q_norm)| {
                        state.offer_row(row, margin, q_norm, widest * q_norm, d_start);
                    });
            });
        }
        all.extend(states);
    }
    rescore(&database, scale.as_ref(), &prepared, all, k, d as usize)
}

/// The kept rows of each query scored again in fp32; the best `k`, best first (equal
/// scores: lower row first).
fn rescore(
    database: &Tensor,
    scale: Option<&Tensor>,
    queries: &Tensor,
    all: Vec<Candidates>,
    k: usize,
    d: usize,
) -> Neighbours {
    let scale = scale.map(|s| Vec::<f32>::try_from(s).expect("f32 scales"));
    let found: Vec<Vec<(f32, i64)>> = with_f32_slice(database, |rows| {
        with_f32_slice(queries, |qs| {
            all.into_par_iter()
                .enumerate()
                .map(|(i, state)| {
                    let tau = state.tau();
                    let q = &qs[i * d..(i + 1) * d];
                    let mut scored: Vec<(f32, i64)> = state
                        .kept
                        .iter()
                        .filter(|&&(_, upper)| upper >= tau)
                        .map(|&(row, _)| {
                            let r = &rows[row as usize * d..(row as usize + 1) * d];
                            let dot: f32 = q.iter().zip(r).map(|(a, b)| a * b).sum();
                            let s = scale.as_ref().map_or(1.0, |s| s[row as usize]);
                            (dot * s, row)
                        })
                        .collect();
                    scored.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                    scored.truncate(k);
                    scored
                })
                .collect()
        })
    });
    Neighbours::from_lists(&found, k)
}

#[cfg(test)]
mod tests {
    use contrastive_tensor::{no_grad, seeded};

    use super::*;
    use crate::scoring::search_cpu;

    fn both(database: &Tensor, queries: &Tensor, k: usize, metric: Metric) -> [Neighbours; 2] {
        no_grad(|| {
            let scorer = Scorer::new(database, metric);
            [
                search_bf16(&scorer, queries, k),
                search_cpu(&scorer, queries, k),
            ]
        })
    }

    #[test]
    fn the_prefilter_finds_what_fp32_finds() {
        let cpu = (Kind::Float, Device::Cpu);
        // Rows of very different norms, more rows than one block, a short last query block.
        let (database, queries) = seeded(21, || {
            let database = Tensor::randn([DATABASE_BLOCK * 3 + 11, 32], cpu)
                * (Tensor::rand([DATABASE_BLOCK * 3 + 11, 1], cpu) * 3.0 + 0.1);
            (database, Tensor::randn([QUERY_BLOCK + 3, 32], cpu))
        });
        for (metric, k) in [
            (Metric::InnerProduct, 10),
            (Metric::Cosine, 1),
            (Metric::Cosine, 50),
        ] {
            let [fast, exact] = both(&database, &queries, k, metric);
            assert!(fast.indices.equal(&exact.indices), "{metric:?} k {k}");
            assert!(
                fast.scores.allclose(&exact.scores, 1e-5, 1e-5, false),
                "{metric:?}"
            );
        }
    }

    #[test]
    fn near_ties_below_bf16_resolution_are_still_ranked_exactly() {
        let cpu = (Kind::Float, Device::Cpu);
        // 40 base rows, each repeated 100 times with changes far below bf16's resolution:
        // their bf16 scores tie, their fp32 scores do not.
        let (database, queries) = seeded(22, || {
            let base = Tensor::randn([40, 16], cpu).repeat([100, 1]);
            let database = &base + Tensor::randn([4000, 16], cpu) * 1e-4;
            (database, Tensor::randn([64, 16], cpu))
        });
        let [fast, exact] = both(&database, &queries, 20, Metric::InnerProduct);
        assert!(fast.scores.allclose(&exact.scores, 1e-6, 1e-6, false));
        // Where the two disagree, the rows tie at fp32 resolution (the two fp32 paths sum
        // in different orders); in f64 they are as good as each other.
        let differ = fast.indices.ne_tensor(&exact.indices).nonzero();
        assert!(
            differ.size()[0] < 200,
            "{} of 1280 places differ",
            differ.size()[0]
        );
        let exact_score = |r: i64, row: i64| {
            (database.get(row).to_kind(Kind::Double) * queries.get(r).to_kind(Kind::Double))
                .sum(Kind::Double)
                .double_value(&[])
        };
        for i in 0..differ.size()[0] {
            let (r, c) = (differ.int64_value(&[i, 0]), differ.int64_value(&[i, 1]));
            let a = exact_score(r, fast.indices.int64_value(&[r, c]));
            let b = exact_score(r, exact.indices.int64_value(&[r, c]));
            assert!(
                (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                "query {r} rank {c}: {a} vs {b}"
            );
        }
    }
}
