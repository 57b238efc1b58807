//! Supervised contrastive learning (Khosla et al., 2020) over two views (and any local
//! ones) of class-balanced batches: labels decide the positives.

use contrastive_losses::{Loss, SupCon, SupConConfig};
use contrastive_tensor::Tensor;

use super::{Registration, Sampling, Setup, StepInputs, TrainMethod};
use crate::Result;
use crate::config::MethodConfig;

pub(super) const REGISTRATION: Registration = Registration {
    name: "supcon",
    build,
};

fn build(config: &MethodConfig, _: &Setup) -> Result<Box<dyn TrainMethod>> {
    Ok(Box::new(Supervised(SupCon::new(SupConConfig::new(
        config.temperature.unwrap_or(0.1),
    ))?)))
}

#[derive(Debug)]
struct Supervised(SupCon);

impl TrainMethod for Supervised {
    fn sampling(&self) -> Sampling {
        Sampling::ClassBalanced
    }

    fn loss(&mut self, step: &StepInputs<'_>) -> Result<Tensor> {
        Ok(self
            .0
            .loss(&step.all_views(step.model)?, step.batch.labels())?)
    }
}
