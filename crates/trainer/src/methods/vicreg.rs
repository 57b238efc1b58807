//! VICReg (Bardes, Ponce and LeCun, 2022): the two views' embeddings pulled together
//! (invariance) while each dimension keeps a spread over the global batch (variance) and
//! the dimensions stay uncorrelated (covariance).

use contrastive_losses::VicReg;
use contrastive_tensor::Tensor;

use serde::{Deserialize, Serialize};

use super::{MethodSettings, RunFacts, Setup, StepInputs, TrainMethod};
use crate::Result;
use crate::error::in_range;

/// `[method]` of `name = "vicreg"` (the paper's weights by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VicregSettings {
    /// Weight of the invariance term.
    pub lambda: f64,
    /// Weight of the variance term.
    pub mu: f64,
    /// Weight of the covariance term.
    pub nu: f64,
}

impl Default for VicregSettings {
    fn default() -> Self {
        Self {
            lambda: 25.0,
            mu: 25.0,
            nu: 1.0,
        }
    }
}

impl MethodSettings for VicregSettings {
    fn check(&self, _: &RunFacts) -> Result<()> {
        for (key, value) in [
            ("method.lambda", self.lambda),
            ("method.mu", self.mu),
            ("method.nu", self.nu),
        ] {
            in_range(key, value, 0.0, f64::MAX)?;
        }
        Ok(())
    }

    fn build(&self, _: &Setup) -> Result<Box<dyn TrainMethod>> {
        Ok(Box::new(Vicreg(VicReg::new(
            self.lambda,
            self.mu,
            self.nu,
        )?)))
    }
}

#[derive(Debug)]
struct Vicreg(VicReg);

impl TrainMethod for Vicreg {
    fn loss(&mut self, step: &StepInputs<'_>) -> Result<Tensor> {
        let (z0, z1) = step.each_view()?;
        Ok(self.0.loss(&z0, &z1)?)
    }
}
