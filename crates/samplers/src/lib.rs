//! `contrastive-samplers`: which items form a batch, and which pairs in it are positive.
//! No tensors: samplers deal in item indices, so they are cheap to test and to reuse.
//!
//! Every sampler is seeded and epoch-based: `epoch(e)` returns that epoch's batches, the same
//! for the same seed and epoch on any machine (ChaCha8, keyed by seed and epoch), so a resumed
//! run sees exactly the batches it would have seen.
//!
//! - [`MultiView`]: shuffled batches of source images; [`view_sources`] says which source
//!   each view of a batch came from; [`step_permutation`] deals a global batch out anew
//!   each step.
//! - [`RandomPairs`]: pairs with a chosen positive fraction, positives sharing a group (a
//!   label or a source).
//! - [`Triplets`]: (anchor, positive, negative) from labels.
//! - [`PkSampler`]: P classes x K items per batch, with a stated [`SmallClassPolicy`].
//! - [`TemporalSampler`]: frames of several videos per batch; [`temporal_relation`] says
//!   which frame pairs are positive (same video, within a window) or negative.
//!
//! ```
//! use contrastive_samplers::PkSampler;
//! let labels: Vec<usize> = (0..100).map(|i| i % 10).collect();
//! let sampler = PkSampler::new(&labels, 4, 5, 7)?;
//! for batch in sampler.epoch(0) {
//!     assert_eq!(batch.len(), 20); // 4 classes x 5 items
//! }
//! # Ok::<(), contrastive_samplers::Error>(())
//! ```

mod error;
mod pairs;
mod pk;
mod temporal;
mod views;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use crate::error::{Error, Result};
pub use crate::pairs::{Pair, RandomPairs, Triplet, Triplets};
pub use crate::pk::{PkSampler, SmallClassPolicy};
pub use crate::temporal::{FrameRef, Relation, TemporalSampler, temporal_relation};
pub use crate::views::{MultiView, step_permutation, view_sources};

/// The random generator of one epoch of one sampler.
pub(crate) fn epoch_rng(seed: u64, epoch: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch);
    rng
}

/// Items grouped by label: `groups[l]` lists the items with label `l`.
pub(crate) fn group_by(labels: &[usize]) -> Vec<Vec<usize>> {
    let classes = labels.iter().max().map_or(0, |m| m + 1);
    let mut groups = vec![Vec::new(); classes];
    for (item, &label) in labels.iter().enumerate() {
        groups[label].push(item);
    }
    groups
}
