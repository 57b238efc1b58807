//! Barlow Twins (Zbontar et al., 2021): the cross-correlation of the two views' embeddings,
//! each dimension standardised over the global batch, pushed towards the identity.

use contrastive_losses::BarlowTwins;
use contrastive_tensor::Tensor;

use super::{Registration, Setup, StepInputs, TrainMethod};
use crate::Result;
use crate::config::MethodConfig;

pub(super) const REGISTRATION: Registration = Registration {
    name: "barlow-twins",
    build,
};

fn build(config: &MethodConfig, _: &Setup) -> Result<Box<dyn TrainMethod>> {
    Ok(Box::new(Barlow(BarlowTwins::new(
        config.lambda.unwrap_or(5e-3),
    )?)))
}

#[derive(Debug)]
struct Barlow(BarlowTwins);

impl TrainMethod for Barlow {
    fn loss(&mut self, step: &StepInputs<'_>) -> Result<Tensor> {
        let (z0, z1) = step.each_view()?;
        Ok(self.0.loss(&z0, &z1)?)
    }
}
