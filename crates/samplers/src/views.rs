//! Multi-view batches: each source image appears once per batch and is augmented into
//! several views.

use rand::seq::SliceRandom;

use crate::error::invalid;
use crate::{Result, epoch_rng};

/// Shuffled batches of source indices `0..len`, each image once per epoch.
#[derive(Debug, Clone)]
pub struct MultiView {
    len: usize,
    batch_size: usize,
    drop_last: bool,
    seed: u64,
}

impl MultiView {
    /// Batches of `batch_size` sources out of `len`; `drop_last` leaves out a last, smaller
    /// batch (as contrastive training usually does, since batch size changes the loss).
    pub fn new(len: usize, batch_size: usize, drop_last: bool, seed: u64) -> Result<Self> {
        if batch_size == 0 {
            return Err(invalid("batch_size", "must be at least 1"));
        }
        if len == 0 || (drop_last && len < batch_size) {
            return Err(invalid(
                "batch_size",
                format!("{batch_size} leaves no full batch from {len} items"),
            ));
        }
        Ok(Self {
            len,
            batch_size,
            drop_last,
            seed,
        })
    }

    /// Number of batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        if self.drop_last {
            self.len / self.batch_size
        } else {
            self.len.div_ceil(self.batch_size)
        }
    }

    /// The batches of epoch `epoch`.
    pub fn epoch(&self, epoch: u64) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.len).collect();
        order.shuffle(&mut epoch_rng(self.seed, epoch));
        order
            .chunks(self.batch_size)
            .take(self.batches_per_epoch())
            .map(<[usize]>::to_vec)
            .collect()
    }
}

/// A permutation of `0..len` for step `step` of a run seeded `seed`: the same on every
/// process and machine, drawn apart from the batch orders. MoCo's shuffled batch-norm deals
/// the global batch's key images out to the ranks in this order.
///
/// ```
/// let p = contrastive_samplers::step_permutation(8, 3, 10);
/// let mut sorted = p.clone();
/// sorted.sort();
/// assert_eq!(sorted, (0..8).collect::<Vec<_>>());
/// assert_eq!(p, contrastive_samplers::step_permutation(8, 3, 10));
/// ```
pub fn step_permutation(len: usize, seed: u64, step: u64) -> Vec<usize> {
    // A seed of its own ("shuffleb"), so the permutations never repeat an epoch's order.
    const OWN: u64 = u64::from_be_bytes(*b"shuffleb");
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut epoch_rng(seed ^ OWN, step));
    order
}

/// For a batch of `batch_len` sources augmented `views` times and laid out view-major (all
/// first views, then all second views, as SimCLR concatenates them), the source position of
/// each view: views with equal values are positives.
pub fn view_sources(batch_len: usize, views: usize) -> Vec<usize> {
    (0..views).flat_map(|_| 0..batch_len).collect()
}
