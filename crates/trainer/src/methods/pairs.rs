//! The margin contrastive loss (Hadsell, Chopra and LeCun, 2006) over every pair of a
//! P x K class-balanced batch of one view.

use contrastive_losses::{ContrastiveConfig, ContrastiveLoss, Loss};
use contrastive_tensor::Tensor;

use super::{Registration, Sampling, Setup, StepInputs, TrainMethod};
use crate::Result;
use crate::config::MethodConfig;

pub(super) const REGISTRATION: Registration = Registration {
    name: "pairs",
    build,
};

fn build(config: &MethodConfig, _: &Setup) -> Result<Box<dyn TrainMethod>> {
    Ok(Box::new(Pairs(ContrastiveLoss::new(
        ContrastiveConfig::new(config.margin.unwrap_or(1.0))
            .with_pos_margin(config.pos_margin.unwrap_or(0.0)),
    )?)))
}

#[derive(Debug)]
struct Pairs(ContrastiveLoss);

impl TrainMethod for Pairs {
    fn views(&self) -> usize {
        1
    }

    fn sampling(&self) -> Sampling {
        Sampling::ClassBalanced
    }

    fn loss(&mut self, step: &StepInputs<'_>) -> Result<Tensor> {
        let z = (step.embed)(step.model, step.batch.single())?;
        Ok(self.0.loss(&z, step.batch.labels())?)
    }
}
