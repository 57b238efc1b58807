//! The triplet margin loss with a miner (batch-all, batch-hard, semi-hard) over P x K
//! class-balanced batches of one view.

use contrastive_losses::{Mining, TripletConfig, TripletLoss};

use super::labeled::OneViewLabeled;
use super::{Registration, Setup, TrainMethod};
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
    Ok(Box::new(OneViewLabeled(TripletLoss::new(
        TripletConfig::new(config.margin.unwrap_or(0.2)).with_mining(mining),
    )?)))
}
