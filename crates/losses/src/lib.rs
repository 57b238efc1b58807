//! `contrastive-losses`: the losses that pull positive pairs together and push negatives
//! apart. Each loss is a validated config plus a struct, and implements [`Loss`] over a batch
//! of embeddings `[N, D]` and labels `[N]` (equal labels make positive pairs: a class, a
//! source image, a video). Explicit pairs, triplets, view pairs and masks have their own
//! methods.
//!
//! - [`ContrastiveLoss`]: margin contrastive loss (Hadsell, Chopra and LeCun, 2006).
//! - [`TripletLoss`]: with batch-all, batch-hard and semi-hard [`Mining`], or a soft margin.
//! - [`InfoNce`]: InfoNCE / NT-Xent with any number of positives, DCL, and chunking.
//! - [`SupCon`]: supervised contrastive loss.
//! - [`MocoQueue`] and [`momentum_update`]: MoCo's queue of keys and EMA key encoder.
//! - [`NearestNeighbourBank`]: NNCLR's support set of past embeddings.
//! - Without negatives: [`negative_cosine`] (BYOL, SimSiam), [`BarlowTwins`], [`VicReg`].
//! - [`Hypersphere`]: alignment and uniformity (Wang and Isola, 2020).
//!
//! Inputs in bf16 or fp16 are computed in fp32; NaN or infinite embeddings are an error, not
//! a NaN loss.
//!
//! ```
//! use contrastive_losses::{InfoNce, InfoNceConfig, Loss};
//! use contrastive_tensor::{Device, Kind, Tensor};
//!
//! let nt_xent = InfoNce::new(InfoNceConfig::new(0.5))?;
//! let z1 = Tensor::randn([8, 16], (Kind::Float, Device::Cpu)).set_requires_grad(true);
//! let z2 = &z1 + 0.1 * Tensor::randn([8, 16], (Kind::Float, Device::Cpu));
//! let loss = nt_xent.views(&z1, &z2)?;
//! loss.backward();
//! assert!(loss.double_value(&[]) > 0.0);
//! assert!(InfoNce::new(InfoNceConfig::new(0.0)).is_err());
//! # Ok::<(), contrastive_losses::Error>(())
//! ```

mod contrastive;
mod error;
mod hypersphere;
mod info_nce;
mod moco;
mod nn_bank;
mod pairs;
mod ring;
mod self_distillation;
mod supcon;
mod triplet;

use contrastive_tensor::Tensor;

pub use crate::contrastive::{ContrastiveConfig, ContrastiveLoss};
pub use crate::error::{Error, Result};
pub use crate::hypersphere::Hypersphere;
pub use crate::info_nce::{InfoNce, InfoNceConfig};
pub use crate::moco::{MocoConfig, MocoQueue, momentum_update};
pub use crate::nn_bank::NearestNeighbourBank;
pub use crate::pairs::Distance;
pub use crate::self_distillation::{BarlowTwins, VicReg, negative_cosine};
pub use crate::supcon::{SupCon, SupConConfig};
pub use crate::triplet::{Mining, TripletConfig, TripletLoss};

/// A loss over a batch of embeddings `[N, D]` with labels `[N]`: items with equal labels form
/// positive pairs, items with different labels negative ones. Returns a scalar to minimise.
pub trait Loss {
    /// The loss of this batch.
    fn loss(&self, embeddings: &Tensor, labels: &Tensor) -> Result<Tensor>;
}
