//! SimCLR (Chen et al., 2020): NT-Xent between two views of every image; with local views
//! (multi-crop), every view of an image is a positive of every other.

use contrastive_losses::{InfoNce, InfoNceConfig, Loss};
use contrastive_tensor::{Kind, Tensor};

use super::{Registration, Setup, StepInputs, TrainMethod};
use crate::Result;
use crate::config::MethodConfig;

pub(super) const REGISTRATION: Registration = Registration {
    name: "simclr",
    build,
};

fn build(config: &MethodConfig, _: &Setup) -> Result<Box<dyn TrainMethod>> {
    Ok(Box::new(Simclr(InfoNce::new(
        InfoNceConfig::new(config.temperature.unwrap_or(0.5))
            .with_decoupled(config.decoupled.unwrap_or(false)),
    )?)))
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
