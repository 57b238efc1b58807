//! NNCLR (Dwibedi et al., 2021): each view's positive is the nearest neighbour of the other
//! view's embedding in a support set of past embeddings; NT-Xent between those neighbours
//! and a predictor's outputs, the global batch's other images as negatives.

use std::collections::HashMap;

use contrastive_losses::{InfoNce, InfoNceConfig, NearestNeighbourBank};
use contrastive_models::ModelConfig;
use contrastive_tensor::{Tensor, nn::VarStore};

use super::predictor::Predictor;
use serde::{Deserialize, Serialize};

use super::{MethodSettings, attached, RunFacts, Setup, StepInputs, TrainMethod, saved};
use crate::Result;
use crate::error::{invalid, positive};

/// `[method]` of `name = "nnclr"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NnclrSettings {
    /// Softmax temperature of NT-Xent.
    pub temperature: f64,
    /// Embeddings in the support set whose nearest neighbours are the positives (a
    /// multiple of `data.batch_size`).
    pub support_size: usize,
}

impl Default for NnclrSettings {
    fn default() -> Self {
        Self {
            temperature: 0.1,
            support_size: 4096,
        }
    }
}

impl MethodSettings for NnclrSettings {
    fn check(&self, run: &RunFacts) -> Result<()> {
        positive("method.temperature", self.temperature)?;
        let (size, batch) = (self.support_size, run.batch_size);
        if size == 0 || !size.is_multiple_of(batch) {
            return Err(invalid(
                "method.support_size",
                format!("must be a positive multiple of data.batch_size ({batch}), got {size}"),
            ));
        }
        Ok(())
    }

    fn build(&self, setup: &Setup) -> Result<Box<dyn TrainMethod>> {
        Ok(Box::new(Nnclr {
            loss: InfoNce::new(InfoNceConfig::new(self.temperature))?,
            bank: NearestNeighbourBank::new(
                self.support_size,
                setup.dim,
                setup.batch_size,
                setup.device,
            )?,
            predictor: None,
            pending: None,
        }))
    }
}

#[derive(Debug)]
struct Nnclr {
    /// NT-Xent.
    loss: InfoNce,
    /// The support set.
    bank: NearestNeighbourBank,
    /// The predictor, once attached.
    predictor: Option<Predictor>,
    /// This step's second-view embeddings, queued after the optimiser's step.
    pending: Option<Tensor>,
}

impl TrainMethod for Nnclr {
    fn attach(&mut self, online: &VarStore, model: ModelConfig) -> Result<()> {
        self.predictor = Some(Predictor::for_model(online, model));
        Ok(())
    }

    fn loss(&mut self, step: &StepInputs<'_>) -> Result<Tensor> {
        let (z0, z1) = step.each_view()?;
        let predictor = attached(&self.predictor)?;
        let (p0, p1) = (predictor.predict(&z0), predictor.predict(&z1));
        let (n0, n1) = (self.bank.nearest(&z0)?, self.bank.nearest(&z1)?);
        let loss = (self.loss.views(&n0, &p1)? + self.loss.views(&n1, &p0)?) * 0.5;
        self.pending = Some(z1.detach());
        Ok(loss)
    }

    fn after_step(&mut self) -> Result<()> {
        if let Some(z) = self.pending.take() {
            self.bank.enqueue(&z)?;
        }
        Ok(())
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let predictor = self.predictor.iter().flat_map(|p| p.state());
        predictor.chain(self.bank.state()).collect()
    }

    fn restore(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        attached(&self.predictor)?.restore(state)?;
        self.bank
            .restore(saved(state, "nnclr.bank")?, saved(state, "nnclr.next")?)?;
        Ok(())
    }

    fn trainable(&self) -> Vec<(String, Tensor)> {
        self.predictor.iter().flat_map(|p| p.trainable()).collect()
    }
}
