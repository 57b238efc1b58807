//! Barlow Twins (Zbontar et al., 2021): the cross-correlation of the two views' embeddings,
//! each dimension standardised over the global batch, pushed towards the identity.

use contrastive_losses::BarlowTwins;
use contrastive_tensor::Tensor;

use serde::{Deserialize, Serialize};

use super::{MethodSettings, RunFacts, Setup, StepInputs, TrainMethod};
use crate::Result;
use crate::error::in_range;

/// `[method]` of `name = "barlow-twins"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BarlowTwinsSettings {
    /// Weight of the off-diagonal (redundancy) terms (the paper's 5e-3).
    pub lambda: f64,
}

impl Default for BarlowTwinsSettings {
    fn default() -> Self {
        Self { lambda: 5e-3 }
    }
}

impl MethodSettings for BarlowTwinsSettings {
    fn check(&self, _: &RunFacts) -> Result<()> {
        in_range("method.lambda", self.lambda, 0.0, f64::MAX)
    }

    fn build(&self, _: &Setup) -> Result<Box<dyn TrainMethod>> {
        Ok(Box::new(Barlow(BarlowTwins::new(self.lambda)?)))
    }
}

#[derive(Debug)]
struct Barlow(BarlowTwins);

impl TrainMethod for Barlow {
    fn loss(&mut self, step: &StepInputs<'_>) -> Result<Tensor> {
        let (z0, z1) = step.each_view()?;
        Ok(self.0.loss(&z0, &z1)?)
    }
}
