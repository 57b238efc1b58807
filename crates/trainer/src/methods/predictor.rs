//! The prediction head BYOL, SimSiam and NNCLR put on top of the model's projection: trained
//! with the model, kept by the method (it is not part of the saved model).

use std::collections::HashMap;

use contrastive_models::{ModelConfig, ProjectionHead};
use contrastive_tensor::{ModuleT, Tensor, nn::VarStore};

use super::{named, restore_store};
use crate::Result;

const PREFIX: &str = "predictor.";

/// Linear, BatchNorm1d, ReLU, Linear from the projection's width back to it, through the
/// head's hidden width (lightly's `BYOLPredictionHead` layout).
#[derive(Debug)]
pub(crate) struct Predictor {
    vs: VarStore,
    head: ProjectionHead,
}

impl Predictor {
    /// A fresh predictor for a model built as `model`, on `online`'s device.
    pub(crate) fn for_model(online: &VarStore, model: ModelConfig) -> Self {
        let vs = VarStore::new(online.device());
        let head = ProjectionHead::prediction(
            &vs.root(),
            model.head_out,
            model.head_hidden,
            model.head_out,
        );
        Self { vs, head }
    }

    /// The predictions for embeddings `z` (training mode).
    pub(crate) fn predict(&self, z: &Tensor) -> Tensor {
        self.head.forward_t(z, true)
    }

    /// Its variables, named (trained, saved and restored).
    pub(crate) fn state(&self) -> Vec<(String, Tensor)> {
        named(&self.vs, PREFIX)
    }

    /// Puts back what [`Predictor::state`] named.
    pub(crate) fn restore(&self, saved: &HashMap<String, Tensor>) -> Result<()> {
        restore_store(&self.vs, PREFIX, saved)
    }

    /// The variables the optimiser trains.
    pub(crate) fn trainable(&self) -> Vec<(String, Tensor)> {
        self.state()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect()
    }
}
