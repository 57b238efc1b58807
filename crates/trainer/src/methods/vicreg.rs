//! VICReg (Bardes, Ponce and LeCun, 2022): the two views' embeddings pulled together
//! (invariance) while each dimension keeps a spread over the global batch (variance) and
//! the dimensions stay uncorrelated (covariance).

use contrastive_losses::VicReg;
use contrastive_tensor::Tensor;

use super::{Registration, Setup, StepInputs, TrainMethod};
use crate::Result;
use crate::config::MethodConfig;

pub(super) const REGISTRATION: Registration = Registration {
    name: "vicreg",
    build,
};

fn build(config: &MethodConfig, _: &Setup) -> Result<Box<dyn TrainMethod>> {
    Ok(Box::new(Vicreg(VicReg::new(
        config.lambda.unwrap_or(25.0),
        config.mu.unwrap_or(25.0),
        config.nu.unwrap_or(1.0),
    )?)))
}

#[derive(Debug)]
struct Vicreg(VicReg);

impl TrainMethod for Vicreg {
    fn loss(&mut self, step: &StepInputs<'_>) -> Result<Tensor> {
        let (z0, z1) = step.each_view()?;
        Ok(self.0.loss(&z0, &z1)?)
    }
}
