//! Supervised contrastive learning (Khosla et al., 2020) over two views (and any local
//! ones) of class-balanced batches: labels decide the positives.

use contrastive_losses::{Loss, SupCon, SupConConfig};
use contrastive_tensor::Tensor;

use serde::{Deserialize, Serialize};

use super::labeled::check_per_class;
use super::{MethodSettings, RunFacts, Sampling, Setup, StepInputs, TrainMethod};
use crate::Result;
use crate::error::positive;

/// `[method]` of `name = "supcon"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupconSettings {
    /// Softmax temperature.
    pub temperature: f64,
    /// Images per class in a batch (P x K batches, K = this).
    pub per_class: usize,
}

impl Default for SupconSettings {
    fn default() -> Self {
        Self {
            temperature: 0.1,
            per_class: 4,
        }
    }
}

impl MethodSettings for SupconSettings {
    fn check(&self, run: &RunFacts) -> Result<()> {
        positive("method.temperature", self.temperature)?;
        check_per_class(self.per_class, run)
    }

    fn build(&self, _: &Setup) -> Result<Box<dyn TrainMethod>> {
        Ok(Box::new(Supervised {
            loss: SupCon::new(SupConConfig::new(self.temperature))?,
            per_class: self.per_class,
        }))
    }

    fn takes_local_views(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct Supervised {
    loss: SupCon,
    per_class: usize,
}

impl TrainMethod for Supervised {
    fn sampling(&self) -> Sampling {
        Sampling::ClassBalanced {
            per_class: self.per_class,
        }
    }

    fn loss(&mut self, step: &StepInputs<'_>) -> Result<Tensor> {
        Ok(self
            .loss
            .loss(&step.all_views(step.model)?, step.batch.labels())?)
    }
}
