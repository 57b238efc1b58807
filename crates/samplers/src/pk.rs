//! P x K class-balanced batches (Hermans et al., 2017): P classes, K items of each.

use rand::seq::SliceRandom;

use crate::error::invalid;
use crate::{Error, Result, epoch_rng, group_by};

/// What to do with classes that have fewer than K items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmallClassPolicy {
    /// Draw their K items with replacement, so an item may appear twice in a batch (as
    /// pytorch-metric-learning's `MPerClassSampler` does).
    #[default]
    WithReplacement,
    /// Leave such classes out.
    Skip,
}

/// Batches of P distinct classes x K items each.
#[derive(Debug, Clone)]
pub struct PkSampler {
    classes: Vec<Vec<usize>>,
    p: usize,
    k: usize,
    batches: usize,
    policy: SmallClassPolicy,
    seed: u64,
}

impl PkSampler {
    /// P x K batches over `labels` with [`SmallClassPolicy::WithReplacement`]; an epoch has
    /// `len / (P * K)` batches.
    pub fn new(labels: &[usize], p: usize, k: usize, seed: u64) -> Result<Self> {
        Self::with_policy(labels, p, k, SmallClassPolicy::default(), seed)
    }

    /// Like [`PkSampler::new`] with an explicit policy for classes smaller than K.
    pub fn with_policy(
        labels: &[usize],
        p: usize,
        k: usize,
        policy: SmallClassPolicy,
        seed: u64,
    ) -> Result<Self> {
        if p == 0 || k == 0 {
            return Err(invalid(
                "p, k",
                format!("both must be at least 1, got P={p}, K={k}"),
            ));
        }
        let classes: Vec<Vec<usize>> = group_by(labels)
            .into_iter()
            .filter(|items| match policy {
                SmallClassPolicy::WithReplacement => !items.is_empty(),
                SmallClassPolicy::Skip => items.len() >= k,
            })
            .collect();
        if classes.len() < p {
            return Err(Error::NotEnoughData(format!(
                "P={p} classes per batch, but only {} classes have {} item(s)",
                classes.len(),
                if policy == SmallClassPolicy::Skip {
                    k
                } else {
                    1
                }
            )));
        }
        let batches = labels.len() / (p * k);
        if batches == 0 {
            return Err(Error::NotEnoughData(format!(
                "{} items make no batch of {p} x {k}",
                labels.len()
            )));
        }
        Ok(Self {
            classes,
            p,
            k,
            batches,
            policy,
            seed,
        })
    }

    /// Number of batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.batches
    }

    /// The batches of epoch `epoch`: each is P groups of K items, a group per class.
    pub fn epoch(&self, epoch: u64) -> Vec<Vec<usize>> {
        let mut rng = epoch_rng(self.seed, epoch);
        (0..self.batches)
            .map(|_| {
                let chosen: Vec<&Vec<usize>> =
                    self.classes.choose_multiple(&mut rng, self.p).collect();
                chosen
                    .into_iter()
                    .flat_map(|items| {
                        if items.len() >= self.k {
                            items
                                .choose_multiple(&mut rng, self.k)
                                .copied()
                                .collect::<Vec<_>>()
                        } else {
                            debug_assert_eq!(self.policy, SmallClassPolicy::WithReplacement);
                            (0..self.k)
                                .map(|_| *items.choose(&mut rng).expect("non-empty class"))
                                .collect()
                        }
                    })
                    .collect()
            })
            .collect()
    }
}
