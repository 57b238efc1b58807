//! A momentum encoder: a copy of the model, never trained, that follows it slowly (MoCo's
//! key encoder, BYOL's target network).

use std::collections::HashMap;

use contrastive_losses::momentum_update;
use contrastive_models::{EmbeddingModel, ModelConfig};
use contrastive_tensor::{Tensor, nn::VarStore};

use super::{named, restore_store};
use crate::Result;

/// A frozen copy of the model, moved towards it after each step.
#[derive(Debug)]
pub(crate) struct MomentumEncoder {
    pub(crate) vs: VarStore,
    pub(crate) model: EmbeddingModel,
    /// Prefix of its tensors' names in checkpoints.
    prefix: &'static str,
}

impl MomentumEncoder {
    /// A copy of `online` (built as `config`), frozen; its tensors saved as `prefix<name>`.
    pub(crate) fn copy_of(
        online: &VarStore,
        config: ModelConfig,
        prefix: &'static str,
    ) -> Result<Self> {
        let mut vs = VarStore::new(online.device());
        let model = EmbeddingModel::new(&vs.root(), config);
        vs.copy(online)?;
        vs.freeze();
        Ok(Self { vs, model, prefix })
    }

    /// `self = momentum * self + (1 - momentum) * online`, tensor by tensor.
    pub(crate) fn follow(&self, online: &VarStore, momentum: f64) -> Result<()> {
        Ok(momentum_update(&self.vs, online, momentum)?)
    }

    /// Its tensors, named.
    pub(crate) fn state(&self) -> Vec<(String, Tensor)> {
        named(&self.vs, self.prefix)
    }

    /// Puts back what [`MomentumEncoder::state`] named.
    pub(crate) fn restore(&self, saved: &HashMap<String, Tensor>) -> Result<()> {
        restore_store(&self.vs, self.prefix, saved)
    }
}
