//! Evaluation metrics: retrieval (precision@1, recall@k, R-precision, MAP@R), clustering
//! (NMI, ARI, accuracy under the best matching) and the geometry of an embedding
//! (alignment and uniformity).

use contrastive_tensor::{Kind, Tensor, no_grad};

use crate::error::check_finite;
use crate::scoring::{Metric, Scorer};
use crate::{Error, Result};

/// Retrieval quality of a labeled set searched against itself (each item a query, the
/// others the database).
#[derive(Debug, Clone, PartialEq)]
pub struct RetrievalReport {
    /// Fraction of queries whose nearest other item has their label.
    pub precision_at_1: f64,
    /// `(k, fraction of queries with at least one same-label item among their k nearest)`
    /// (Recall@K of Song et al., 2016).
    pub recall_at_k: Vec<(usize, f64)>,
    /// Mean over queries of the same-label fraction among the `R` nearest, `R` = the
    /// number of other items with the query's label.
    pub r_precision: f64,
    /// Mean average precision at `R` (Musgrave, Belongie and Lim, 2020).
    pub map_at_r: f64,
}

/// Computes [`RetrievalReport`] for `embeddings` `[N, D]` with `labels` `[N]`, leaving each
/// query out of its own neighbours. The neighbour lists are as long as the largest class
/// (minus one), as R-precision and MAP@R need; queries without another item of their class
/// are left out. Labels are int64.
pub fn retrieval_metrics(
    embeddings: &Tensor,
    labels: &Tensor,
    metric: Metric,
    recall_ks: &[usize],
) -> Result<RetrievalReport> {
    let n = embeddings.size()[0];
    if labels.size() != [n] || embeddings.dim() != 2 || n < 2 {
        return Err(Error::Shape {
            op: "retrieval metrics",
            message: format!(
                "expected embeddings [N >= 2, D] and labels [N], got {:?} and {:?}",
                embeddings.size(),
                labels.size()
            ),
        });
    }
    check_finite("embeddings", embeddings)?;
    let labels: Vec<i64> = Vec::try_from(
        &labels
            .to_kind(Kind::Int64)
            .to_device(contrastive_tensor::Device::Cpu),
    )?;
    let mut counts = std::collections::HashMap::new();
    for &l in &labels {
        *counts.entry(l).or_insert(0i64) += 1;
    }
    let largest = counts.values().copied().max().unwrap_or(1);
    let max_k = recall_ks.iter().copied().max().unwrap_or(1) as i64;
    let k = (largest - 1).max(max_k).min(n - 1).max(1);
    let x = embeddings.to_kind(Kind::Float);
    let mut neighbours: Vec<i64> = Vec::with_capacity((n * k) as usize);
    no_grad(|| -> Result<()> {
        let chunk = (32 * 1024 * 1024 / n).clamp(1, 4096);
        let scorer = Scorer::new(&x, metric);
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let mut sim = scorer.similarity(&x.narrow(0, start, len));
            // Leave each query out of its own neighbours.
            let own =
                Tensor::arange_start(start, start + len, (Kind::Int64, x.device())).unsqueeze(1);
            sim = sim.scatter_value(1, &own, f64::NEG_INFINITY);
            let index = sim
                .topk(k, 1, true, true)
                .1
                .to_device(contrastive_tensor::Device::Cpu);
            neighbours.extend(Vec::<i64>::try_from(&index.flatten(0, -1))?);
            start += len;
        }
        Ok(())
    })?;

    let (mut p1, mut rp, mut map, mut queries) = (0.0, 0.0, 0.0, 0usize);
    let mut recall = vec![0usize; recall_ks.len()];
    for (q, &label) in labels.iter().enumerate() {
        let r = (counts[&label] - 1) as usize;
        if r == 0 {
            continue;
        }
        queries += 1;
        let row = &neighbours[q * k as usize..(q + 1) * k as usize];
        let hits: Vec<bool> = row.iter().map(|&j| labels[j as usize] == label).collect();
        p1 += f64::from(u8::from(hits[0]));
        for (slot, &kk) in recall_ks.iter().enumerate() {
            recall[slot] += usize::from(hits[..kk.min(hits.len())].iter().any(|&h| h));
        }
        let within = &hits[..r.min(hits.len())];
        rp += within.iter().filter(|&&h| h).count() as f64 / r as f64;
        let mut found = 0.0;
        let mut ap = 0.0;
        for (i, &hit) in within.iter().enumerate() {
            if hit {
                found += 1.0;
                ap += found / (i + 1) as f64;
            }
        }
        map += ap / r as f64;
    }
    if queries == 0 {
        return Err(Error::Shape {
            op: "retrieval metrics",
            message: "no class has two items, so no query has a relevant neighbour".into(),
        });
    }
    let m = queries as f64;
    Ok(RetrievalReport {
        precision_at_1: p1 / m,
        recall_at_k: recall_ks
            .iter()
            .zip(&recall)
            .map(|(&k, &c)| (k, c as f64 / m))
            .collect(),
        r_precision: rp / m,
        map_at_r: map / m,
    })
}

/// An [`Error::Shape`] unless the two labelings (or lists) `op` compares have one length.
fn same_length(op: &'static str, a: usize, b: usize) -> Result<()> {
    if a == b {
        Ok(())
    } else {
        Err(Error::Shape {
            op,
            message: format!("two labelings of the same items are needed, got {a} and {b}"),
        })
    }
}

/// The contingency table of two labelings (values remapped to `0..`), with row and column
/// sums.
fn contingency(a: &[usize], b: &[usize]) -> (Vec<Vec<f64>>, Vec<f64>, Vec<f64>) {
    let remap = |x: &[usize]| {
        let mut seen = std::collections::BTreeMap::new();
        x.iter()
            .map(|v| {
                let next = seen.len();
                *seen.entry(*v).or_insert(next)
            })
            .collect::<Vec<_>>()
    };
    let (a, b) = (remap(a), remap(b));
    let (ra, rb) = (
        a.iter().max().map_or(0, |m| m + 1),
        b.iter().max().map_or(0, |m| m + 1),
    );
    let mut table = vec![vec![0.0; rb]; ra];
    for (&i, &j) in a.iter().zip(&b) {
        table[i][j] += 1.0;
    }
    let rows = table.iter().map(|r| r.iter().sum()).collect();
    let cols = (0..rb).map(|j| table.iter().map(|r| r[j]).sum()).collect();
    (table, rows, cols)
}

fn entropy(counts: &[f64], n: f64) -> f64 {
    counts
        .iter()
        .filter(|&&c| c > 0.0)
        .map(|&c| -(c / n) * (c / n).ln())
        .sum()
}

/// Recall of an approximate search, as ANN benchmarks define it: the share of the exact
/// `k` nearest neighbours (`exact`, `[M, k]` indices) that the approximate search found
/// (`found`, `[M, k']` indices, padding -1 allowed), averaged over the queries.
///
/// ```
/// use contrastive_retrieval::neighbour_recall;
/// use contrastive_tensor::Tensor;
/// let exact = Tensor::from_slice(&[1i64, 2, 3, 4]).view([2, 2]);
/// let found = Tensor::from_slice(&[2i64, 1, 3, -1]).view([2, 2]);
/// assert_eq!(neighbour_recall(&found, &exact)?, 0.75);
/// # Ok::<(), contrastive_retrieval::Error>(())
/// ```
///
/// Both must be `[M, _]` for the same `M`; no query (or `k = 0`) is an error.
pub fn neighbour_recall(found: &Tensor, exact: &Tensor) -> Result<f64> {
    let (f, e) = (found.size(), exact.size());
    if f.len() != 2 || e.len() != 2 || f[0] != e[0] || e[0] * e[1] == 0 {
        return Err(Error::Shape {
            op: "neighbour recall",
            message: format!("expected found [M, k'] and exact [M, k > 0], got {f:?} and {e:?}"),
        });
    }
    let [m, k] = [e[0], e[1]];
    let hits = found
        .unsqueeze(2)
        .eq_tensor(&exact.unsqueeze(1))
        .any_dim(1, false)
        .sum(Kind::Int64)
        .int64_value(&[]);
    Ok(hits as f64 / (m * k) as f64)
}

/// Normalised mutual information with the arithmetic mean of the entropies (scikit-learn's
/// default `normalized_mutual_info_score`). Labelings of different lengths are an error.
pub fn nmi(truth: &[usize], predicted: &[usize]) -> Result<f64> {
    same_length("nmi", truth.len(), predicted.len())?;
    let n = truth.len() as f64;
    let (table, rows, cols) = contingency(truth, predicted);
    let mut mi = 0.0;
    for (i, row) in table.iter().enumerate() {
        for (j, &c) in row.iter().enumerate() {
            if c > 0.0 {
                mi += c / n * (n * c / (rows[i] * cols[j])).ln();
            }
        }
    }
    let (ha, hb) = (entropy(&rows, n), entropy(&cols, n));
    if ha == 0.0 && hb == 0.0 {
        return Ok(1.0);
    }
    Ok((mi / ((ha + hb) / 2.0)).clamp(0.0, 1.0))
}

/// Adjusted Rand index (Hubert and Arabie, 1985), as scikit-learn's
/// `adjusted_rand_score` (1.0 for fewer than two items, as it gives). Labelings of
/// different lengths are an error.
pub fn ari(truth: &[usize], predicted: &[usize]) -> Result<f64> {
    same_length("ari", truth.len(), predicted.len())?;
    if truth.len() < 2 {
        return Ok(1.0);
    }
    let pairs = |x: f64| x * (x - 1.0) / 2.0;
    let n = truth.len() as f64;
    let (table, rows, cols) = contingency(truth, predicted);
    let index: f64 = table.iter().flatten().map(|&c| pairs(c)).sum();
    let (sa, sb): (f64, f64) = (
        rows.iter().map(|&c| pairs(c)).sum(),
        cols.iter().map(|&c| pairs(c)).sum(),
    );
    let expected = sa * sb / pairs(n);
    let max = (sa + sb) / 2.0;
    if max == expected {
        return Ok(1.0);
    }
    Ok((index - expected) / (max - expected))
}

/// Accuracy of `predicted` cluster ids under the one-to-one matching of clusters to classes
/// that maximises it (Hungarian algorithm), as in unsupervised clustering papers.
/// Labelings of different lengths, or none, are an error.
pub fn clustering_accuracy(truth: &[usize], predicted: &[usize]) -> Result<f64> {
    same_length("clustering accuracy", truth.len(), predicted.len())?;
    if truth.is_empty() {
        return Err(Error::Shape {
            op: "clustering accuracy",
            message: "no items".into(),
        });
    }
    let (table, _, _) = contingency(predicted, truth);
    let size = table.len().max(table.first().map_or(0, Vec::len));
    // Square cost matrix: minimise -count.
    let cost: Vec<Vec<f64>> = (0..size)
        .map(|i| {
            (0..size)
                .map(|j| -table.get(i).and_then(|r| r.get(j)).copied().unwrap_or(0.0))
                .collect()
        })
        .collect();
    let assignment = hungarian(&cost);
    let matched: f64 = assignment
        .iter()
        .enumerate()
        .map(|(i, &j)| -cost[i][j])
        .sum();
    Ok(matched / truth.len() as f64)
}

/// The assignment of rows to columns of a square `cost` matrix with the least total cost
/// (Kuhn-Munkres with potentials, O(n^3)); `result[row] = column`.
pub fn hungarian(cost: &[Vec<f64>]) -> Vec<usize> {
    let n = cost.len();
    // 1-based arrays as in the classic formulation; column 0 is a sentinel.
    let (mut u, mut v) = (vec![0.0; n + 1], vec![0.0; n + 1]);
    let (mut p, mut way) = (vec![0usize; n + 1], vec![0usize; n + 1]);
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![f64::INFINITY; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let (mut delta, mut j1) = (f64::INFINITY, 0);
            for j in 1..=n {
                if !used[j] {
                    let cur = cost[i0 - 1][j - 1] - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut result = vec![0; n];
    for j in 1..=n {
        if p[j] > 0 {
            result[p[j] - 1] = j - 1;
        }
    }
    result
}

/// Alignment (Wang and Isola, 2020): the mean of `|f(x) - f(y)|^alpha` over positive pairs
/// (rows of `z1` and `z2`, L2-normalised here). Lower is better; `alpha` is usually 2.
/// Both must be `[N > 0, D]` of one shape.
pub fn alignment(z1: &Tensor, z2: &Tensor, alpha: f64) -> Result<f64> {
    if z1.size() != z2.size() || z1.dim() != 2 || z1.size()[0] == 0 {
        return Err(Error::Shape {
            op: "alignment",
            message: format!(
                "expected paired embeddings [N > 0, D] of one shape, got {:?} and {:?}",
                z1.size(),
                z2.size()
            ),
        });
    }
    Ok(no_grad(|| {
        let d = crate::search::normalize(&z1.to_kind(Kind::Double))
            - crate::search::normalize(&z2.to_kind(Kind::Double));
        d.norm_scalaropt_dim(2.0, [1], false)
            .pow_tensor_scalar(alpha)
            .mean(Kind::Double)
            .double_value(&[])
    }))
}

/// Uniformity (Wang and Isola, 2020): `log mean exp(-t |f(x) - f(y)|^2)` over all distinct
/// pairs of rows of `z` (L2-normalised here). Lower is better; `t` is usually 2. `z` must
/// be `[N >= 2, D]`.
pub fn uniformity(z: &Tensor, t: f64) -> Result<f64> {
    if z.dim() != 2 || z.size()[0] < 2 {
        return Err(Error::Shape {
            op: "uniformity",
            message: format!("expected embeddings [N >= 2, D], got {:?}", z.size()),
        });
    }
    Ok(no_grad(|| {
        let z = crate::search::normalize(&z.to_kind(Kind::Double));
        let n = z.size()[0];
        let sq = (z.matmul(&z.tr()) * -2.0 + 2.0).clamp_min(0.0);
        let upper = Tensor::ones([n, n], (Kind::Bool, z.device())).triu(1);
        let values = sq.masked_select(&upper);
        (values * -t)
            .exp()
            .mean(Kind::Double)
            .log()
            .double_value(&[])
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clustering_scores_of_simple_cases() {
        let truth = [0, 0, 1, 1, 2, 2];
        // The same partition under other names: perfect.
        let renamed = [5, 5, 3, 3, 9, 9];
        assert!((nmi(&truth, &renamed).unwrap() - 1.0).abs() < 1e-12);
        assert!((ari(&truth, &renamed).unwrap() - 1.0).abs() < 1e-12);
        assert!((clustering_accuracy(&truth, &renamed).unwrap() - 1.0).abs() < 1e-12);
        // One cluster for everything: NMI 0, ARI 0, accuracy of the largest class.
        let one = [0; 6];
        assert!(nmi(&truth, &one).unwrap().abs() < 1e-12);
        assert!(ari(&truth, &one).unwrap().abs() < 1e-12);
        assert!((clustering_accuracy(&truth, &one).unwrap() - 2.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn hungarian_finds_the_cheapest_assignment() {
        let cost = vec![
            vec![4.0, 1.0, 3.0],
            vec![2.0, 0.0, 5.0],
            vec![3.0, 2.0, 2.0],
        ];
        // Best: row 0 -> 1, row 1 -> 0, row 2 -> 2, total 5.
        assert_eq!(hungarian(&cost), [1, 0, 2]);
    }
}
