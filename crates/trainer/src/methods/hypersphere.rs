//! Alignment and uniformity on the hypersphere (Wang and Isola, 2020): the two views of an
//! image pulled together while each view's embeddings spread over the unit sphere; the loss
//! optimises the two properties that the paper shows NT-Xent optimises asymptotically,
//! directly, without a softmax over negatives.

use contrastive_losses::Hypersphere;
use contrastive_tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::{MethodSettings, RunFacts, Setup, StepInputs, TrainMethod};
use crate::Result;
use crate::error::{in_range, positive};

/// `[method]` of `name = "hypersphere"` (the paper's values by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HypersphereSettings {
    /// The uniformity's `t` in `exp(-t ||x_i - x_j||^2)` (lightly's default is 1).
    pub temperature: f64,
    /// Weight of the uniformity terms against the alignment.
    pub lambda: f64,
    /// Power of the alignment's distances between the views.
    pub alpha: f64,
}

impl Default for HypersphereSettings {
    fn default() -> Self {
        Self {
            temperature: 2.0,
            lambda: 1.0,
            alpha: 2.0,
        }
    }
}

impl MethodSettings for HypersphereSettings {
    fn check(&self, _: &RunFacts) -> Result<()> {
        positive("method.temperature", self.temperature)?;
        in_range("method.lambda", self.lambda, 0.0, f64::MAX)?;
        positive("method.alpha", self.alpha)
    }

    fn build(&self, _: &Setup) -> Result<Box<dyn TrainMethod>> {
        Ok(Box::new(AlignUniform(Hypersphere::new(
            self.temperature,
            self.lambda,
            self.alpha,
        )?)))
    }
}

#[derive(Debug)]
struct AlignUniform(Hypersphere);

impl TrainMethod for AlignUniform {
    fn loss(&mut self, step: &StepInputs<'_>) -> Result<Tensor> {
        let (z0, z1) = step.each_view()?;
        Ok(self.0.loss(&z0, &z1)?)
    }
}
