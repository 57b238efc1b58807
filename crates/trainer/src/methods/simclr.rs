//! SimCLR (Chen et al., 2020): NT-Xent between two views of every image; with local views
//! (multi-crop), every view of an image is a positive of every other.

use contrastive_losses::{InfoNce, InfoNceConfig, Loss};
use contrastive_tensor::{Kind, Tensor};

use serde::{Deserialize, Serialize};

use super::{MethodSettings, RunFacts, Setup, StepInputs, TrainMethod};
use crate::Result;
use crate::error::positive;

/// `[method]` of `name = "simclr"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimclrSettings {
    /// Softmax temperature of NT-Xent.
    pub temperature: f64,
    /// Leave each positive out of NT-Xent's denominator: decoupled contrastive learning
    /// (Yeh et al., 2022).
    pub decoupled: bool,
}

impl Default for SimclrSettings {
    fn default() -> Self {
        Self {
            temperature: 0.5,
            decoupled: false,
        }
    }
}

impl MethodSettings for SimclrSettings {
    fn check(&self, _: &RunFacts) -> Result<()> {
        positive("method.temperature", self.temperature)
    }

    fn build(&self, _: &Setup) -> Result<Box<dyn TrainMethod>> {
        Ok(Box::new(Simclr(InfoNce::new(
            InfoNceConfig::new(self.temperature).with_decoupled(self.decoupled),
        )?)))
    }

    fn takes_local_views(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct Simclr(InfoNce);

impl TrainMethod for Simclr {
    fn loss(&mut self, step: &StepInputs<'_>) -> Result<Tensor> {
        let z = step.all_views(step.model)?;
        let n = step.batch.images;
        Ok(if z.size()[0] == 2 * n {
            self.0.views(&z.narrow(0, 0, n), &z.narrow(0, n, n))?
        } else {
            // Multi-crop: every view of an image is a positive of every other.
            let image = Tensor::arange(n, (Kind::Int64, z.device())).repeat([z.size()[0] / n]);
            self.0.loss(&z, &image)?
        })
    }
}
