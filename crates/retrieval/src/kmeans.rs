//! k-means with k-means++ seeding and several seeded restarts.

use contrastive_tensor::{Device, Kind, Tensor, no_grad};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{check_finite, invalid};
use crate::{Error, Result};

/// Lloyd's k-means (squared Euclidean distance), started `inits` times from k-means++
/// seeds (Arthur and Vassilvitskii, 2007); the run with the least inertia wins, as
/// scikit-learn's `KMeans(n_init=...)` does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KMeans {
    /// Clusters.
    pub k: usize,
    /// Restarts from different seeds.
    pub inits: usize,
    /// Iterations per restart at most.
    pub max_iter: usize,
    /// Stop when the centroids move less than this (sum of squared shifts, relative to the
    /// data's variance), as scikit-learn's `tol`.
    pub tol: f64,
    /// Seed of the k-means++ draws.
    pub seed: u64,
}

/// A fitted clustering.
#[derive(Debug)]
pub struct Clustering {
    /// `[k, D]` centroids.
    pub centroids: Tensor,
    /// Cluster of each row.
    pub labels: Vec<usize>,
    /// Sum of squared distances of rows to their centroid.
    pub inertia: f64,
    /// Iterations of the winning restart.
    pub iterations: usize,
}

impl Clustering {
    /// Each cluster's rows of `x` (the rows it was fit on), nearest its centre first: the
    /// most typical members lead.
    pub fn members_by_distance(&self, x: &Tensor) -> Result<Vec<Vec<usize>>> {
        let index = Tensor::from_slice(&self.labels.iter().map(|&l| l as i64).collect::<Vec<_>>());
        let distance = Vec::<f32>::try_from(
            &(x - self.centroids.f_index_select(0, &index)?)
                .square()
                .sum_dim_intlist(1, false, Kind::Float),
        )?;
        let mut members = vec![Vec::new(); self.centroids.size()[0] as usize];
        for (item, &cluster) in self.labels.iter().enumerate() {
            members[cluster].push(item);
        }
        for items in &mut members {
            items.sort_by(|&a, &b| distance[a].total_cmp(&distance[b]));
        }
        Ok(members)
    }
}

impl KMeans {
    /// `k` clusters with scikit-learn's defaults otherwise (10 restarts... here 3, 300
    /// iterations, tol 1e-4).
    pub fn new(k: usize, seed: u64) -> Self {
        Self {
            k,
            inits: 3,
            max_iter: 300,
            tol: 1e-4,
            seed,
        }
    }

    /// Clusters the rows of `x` `[N, D]`.
    pub fn fit(&self, x: &Tensor) -> Result<Clustering> {
        if self.k == 0 || self.inits == 0 || self.max_iter == 0 {
            return Err(invalid("k, inits and max_iter", "must all be at least 1"));
        }
        let size = x.size();
        if size.len() != 2 || (size[0] as usize) < self.k {
            return Err(Error::Shape {
                op: "k-means",
                message: format!("needs [N >= k = {}, D] rows, got {size:?}", self.k),
            });
        }
        check_finite("k-means rows", x)?;
        no_grad(|| {
            let x = x.to_kind(Kind::Float);
            let norms = x.square().sum_dim_intlist(1, false, Kind::Float);
            let variance = x
                .var_dim(0, false, false)
                .mean(Kind::Float)
                .double_value(&[]);
            let tol = self.tol * variance;
            let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
            let mut best: Option<Clustering> = None;
            for _ in 0..self.inits {
                let mut centroids = plus_plus(&x, &norms, self.k, &mut rng)?;
                let mut iterations = 0;
                let mut assigned;
                loop {
                    iterations += 1;
                    assigned = nearest(&x, &norms, &centroids);
                    let updated = update(&x, &assigned.0, &centroids);
                    let shift = (&updated - &centroids)
                        .square()
                        .sum(Kind::Float)
                        .double_value(&[]);
                    centroids = updated;
                    if shift <= tol || iterations >= self.max_iter {
                        break;
                    }
                }
                // Labels and inertia of the final centroids.
                let (labels, distances) = nearest(&x, &norms, &centroids);
                let inertia = distances.sum(Kind::Double).double_value(&[]);
                if best.as_ref().is_none_or(|b| inertia < b.inertia) {
                    best = Some(Clustering {
                        centroids,
                        labels: Vec::<i64>::try_from(&labels.to_device(Device::Cpu))?
                            .into_iter()
                            .map(|l| l as usize)
                            .collect(),
                        inertia,
                        iterations,
                    });
                }
            }
            Ok(best.expect("at least one restart ran"))
        })
    }
}

/// Nearest centroid of each row and the squared distance to it.
fn nearest(x: &Tensor, norms: &Tensor, centroids: &Tensor) -> (Tensor, Tensor) {
    let c2 = centroids.square().sum_dim_intlist(1, false, Kind::Float);
    let d = (norms.unsqueeze(1) - x.matmul(&centroids.tr()) * 2.0 + c2.unsqueeze(0)).clamp_min(0.0);
    let (distances, labels) = d.min_dim(1, false);
    (labels, distances)
}

/// Means of the rows of each cluster; an empty cluster keeps its centroid.
fn update(x: &Tensor, labels: &Tensor, centroids: &Tensor) -> Tensor {
    let k = centroids.size()[0];
    let sums = Tensor::zeros([k, x.size()[1]], (Kind::Float, x.device())).index_add(0, labels, x);
    let counts = Tensor::zeros([k], (Kind::Float, x.device())).index_add(
        0,
        labels,
        &Tensor::ones([x.size()[0]], (Kind::Float, x.device())),
    );
    let means = sums / counts.clamp_min(1.0).unsqueeze(1);
    means.where_self(&counts.gt(0.0).unsqueeze(1), centroids)
}

/// k-means++: the first centre uniformly, each next one with probability proportional to
/// the squared distance to the nearest centre so far (with scikit-learn's greedy variant:
/// the best of `2 + ln k` candidates).
fn plus_plus(x: &Tensor, norms: &Tensor, k: usize, rng: &mut ChaCha8Rng) -> Result<Tensor> {
    let n = x.size()[0];
    let trials = 2 + (k as f64).ln() as usize;
    let mut chosen = vec![rng.gen_range(0..n)];
    let mut closest =
        (norms - x.matmul(&x.get(chosen[0])) * 2.0 + norms.get(chosen[0])).clamp_min(0.0);
    for _ in 1..k {
        let weights: Vec<f64> = Vec::<f32>::try_from(&closest.to_device(Device::Cpu))?
            .into_iter()
            .map(f64::from)
            .collect();
        let total: f64 = weights.iter().sum();
        let candidates: Vec<i64> = (0..trials)
            .map(|_| {
                if total > 0.0 {
                    let mut target = rng.r#gen::<f64>() * total;
                    weights
                        .iter()
                        .position(|w| {
                            target -= w;
                            target <= 0.0
                        })
                        .unwrap_or(weights.len() - 1) as i64
                } else {
                    rng.gen_range(0..n)
                }
            })
            .collect();
        // Every candidate's distances in one product, so the rows are read once per step.
        let index = Tensor::from_slice(&candidates).to_device(x.device());
        let d = (norms.unsqueeze(1) - x.matmul(&x.index_select(0, &index).tr()) * 2.0
            + norms.index_select(0, &index).unsqueeze(0))
        .clamp_min(0.0);
        let updated = closest.unsqueeze(1).minimum(&d);
        let potentials = Vec::<f64>::try_from(
            &updated
                .sum_dim_intlist(0, false, Kind::Double)
                .to_device(Device::Cpu),
        )?;
        // The first candidate of least potential, as when they were tried one by one.
        let best = (0..trials)
            .min_by(|&a, &b| potentials[a].total_cmp(&potentials[b]).then(a.cmp(&b)))
            .expect("at least one candidate");
        let (candidate, updated) = (candidates[best], updated.select(1, best as i64));
        chosen.push(candidate);
        closest = updated;
    }
    let index = Tensor::from_slice(&chosen).to_device(x.device());
    Ok(x.index_select(0, &index))
}

#[cfg(test)]
mod tests {
    use contrastive_tensor::seeded;

    use super::*;
    use crate::metrics::ari;

    #[test]
    fn separated_blobs_are_found() {
        let truth: Vec<i64> = (0..400).map(|i| i % 4).collect();
        let x = seeded(2, || {
            let centres = Tensor::randn([4, 6], (Kind::Float, Device::Cpu)) * 10.0;
            centres.index_select(0, &Tensor::from_slice(&truth))
                + Tensor::randn([400, 6], (Kind::Float, Device::Cpu))
        });
        let fitted = KMeans::new(4, 0).fit(&x).unwrap();
        let truth: Vec<usize> = truth.iter().map(|&t| t as usize).collect();
        assert!((ari(&truth, &fitted.labels).unwrap() - 1.0).abs() < 1e-9);
        // The inertia is about N * D * 1 (unit noise).
        assert!(
            (fitted.inertia / 2400.0 - 1.0).abs() < 0.15,
            "{}",
            fitted.inertia
        );
        // The same seed gives the same clustering.
        assert_eq!(KMeans::new(4, 0).fit(&x).unwrap().labels, fitted.labels);
    }

    #[test]
    fn bad_settings_are_errors() {
        let x = Tensor::zeros([3, 2], (Kind::Float, Device::Cpu));
        assert!(KMeans::new(4, 0).fit(&x).is_err());
        assert!(KMeans::new(0, 0).fit(&x).is_err());
    }
}
