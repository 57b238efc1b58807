//! The triplet margin loss with a miner (batch-all, batch-hard, semi-hard) over P x K
//! class-balanced batches of one view.

use contrastive_losses::{Loss, Mining, TripletConfig, TripletLoss};
use contrastive_tensor::Tensor;

use super::{Registration, Sampling, Setup, StepInputs, TrainMethod};
use crate::Result;
use crate::config::MethodConfig;

pub(super) const REGISTRATION: Registration = Registration {
    name: "triplet",
    build,
};

fn build(config: &MethodConfig, _: &Setup) -> Result<Box<dyn TrainMethod>> {
    let mining = match config.mining.as_deref().unwrap_or("semi-hard") {
        "batch-all" => Mining::BatchAll,
        "batch-hard" => Mining::BatchHard,
        _ => Mining::SemiHard,
    };
    Ok(Box::new(Triplet(TripletLoss::new(
        TripletConfig::new(config.margin.unwrap_or(0.2)).with_mining(mining),
    )?)))
}

#[derive(Debug)]
struct Triplet(TripletLoss);

impl TrainMethod for Triplet {
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
