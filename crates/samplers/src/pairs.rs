//! Pairs and triplets drawn from labels (or from any grouping, such as the source image).

use rand::Rng;
use rand::seq::SliceRandom;

use crate::error::invalid;
use crate::{Error, Result, epoch_rng, group_by};

/// Two items and whether they form a positive pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    /// First item.
    pub a: usize,
    /// Second item.
    pub b: usize,
    /// Same group (label or source).
    pub positive: bool,
}

/// Random pairs, a chosen fraction of them positive.
#[derive(Debug, Clone)]
pub struct RandomPairs {
    groups: Vec<Vec<usize>>,
    labels: Vec<usize>,
    positive_fraction: f64,
    pairs_per_epoch: usize,
    seed: u64,
}

impl RandomPairs {
    /// Pairs over items grouped by `groups[i]` (a class label, or the source image of a
    /// view); `positive_fraction` of each epoch's `pairs_per_epoch` pairs are positive.
    pub fn new(
        groups: &[usize],
        positive_fraction: f64,
        pairs_per_epoch: usize,
        seed: u64,
    ) -> Result<Self> {
        if !(0.0..=1.0).contains(&positive_fraction) {
            return Err(invalid(
                "positive_fraction",
                format!("must be in [0, 1], got {positive_fraction}"),
            ));
        }
        if pairs_per_epoch == 0 {
            return Err(invalid("pairs_per_epoch", "must be at least 1"));
        }
        let by_group = group_by(groups);
        let has_positive = by_group.iter().any(|g| g.len() >= 2);
        let nonempty = by_group.iter().filter(|g| !g.is_empty()).count();
        if positive_fraction > 0.0 && !has_positive {
            return Err(Error::NotEnoughData(
                "no group has two items, so there is no positive pair".into(),
            ));
        }
        if positive_fraction < 1.0 && nonempty < 2 {
            return Err(Error::NotEnoughData(
                "a single group has no negative pair".into(),
            ));
        }
        Ok(Self {
            groups: by_group,
            labels: groups.to_vec(),
            positive_fraction,
            pairs_per_epoch,
            seed,
        })
    }

    /// The pairs of epoch `epoch`, in random order.
    pub fn epoch(&self, epoch: u64) -> Vec<Pair> {
        let mut rng = epoch_rng(self.seed, epoch);
        let positives = (self.pairs_per_epoch as f64 * self.positive_fraction).round() as usize;
        let multi: Vec<&Vec<usize>> = self.groups.iter().filter(|g| g.len() >= 2).collect();
        let mut pairs = Vec::with_capacity(self.pairs_per_epoch);
        for _ in 0..positives {
            let group = multi[rng.gen_range(0..multi.len())];
            let picked: Vec<usize> = group.choose_multiple(&mut rng, 2).copied().collect();
            pairs.push(Pair {
                a: picked[0],
                b: picked[1],
                positive: true,
            });
        }
        while pairs.len() < self.pairs_per_epoch {
            let (a, b) = (
                rng.gen_range(0..self.labels.len()),
                rng.gen_range(0..self.labels.len()),
            );
            if self.labels[a] != self.labels[b] {
                pairs.push(Pair {
                    a,
                    b,
                    positive: false,
                });
            }
        }
        pairs.shuffle(&mut rng);
        pairs
    }
}

/// An anchor, a positive (same label) and a negative (another label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Triplet {
    /// The anchor.
    pub anchor: usize,
    /// An item with the anchor's label.
    pub positive: usize,
    /// An item with another label.
    pub negative: usize,
}

/// Random triplets from labels.
#[derive(Debug, Clone)]
pub struct Triplets {
    groups: Vec<Vec<usize>>,
    labels: Vec<usize>,
    per_epoch: usize,
    seed: u64,
}

impl Triplets {
    /// `per_epoch` triplets a epoch from `labels`.
    pub fn new(labels: &[usize], per_epoch: usize, seed: u64) -> Result<Self> {
        if per_epoch == 0 {
            return Err(invalid("per_epoch", "must be at least 1"));
        }
        let groups = group_by(labels);
        if !groups.iter().any(|g| g.len() >= 2)
            || groups.iter().filter(|g| !g.is_empty()).count() < 2
        {
            return Err(Error::NotEnoughData(
                "triplets need a label with two items and at least two labels".into(),
            ));
        }
        Ok(Self {
            groups,
            labels: labels.to_vec(),
            per_epoch,
            seed,
        })
    }

    /// The triplets of epoch `epoch`.
    pub fn epoch(&self, epoch: u64) -> Vec<Triplet> {
        let mut rng = epoch_rng(self.seed, epoch);
        let multi: Vec<&Vec<usize>> = self.groups.iter().filter(|g| g.len() >= 2).collect();
        (0..self.per_epoch)
            .map(|_| {
                let group = multi[rng.gen_range(0..multi.len())];
                let ap: Vec<usize> = group.choose_multiple(&mut rng, 2).copied().collect();
                let negative = loop {
                    let n = rng.gen_range(0..self.labels.len());
                    if self.labels[n] != self.labels[ap[0]] {
                        break n;
                    }
                };
                Triplet {
                    anchor: ap[0],
                    positive: ap[1],
                    negative,
                }
            })
            .collect()
    }
}
