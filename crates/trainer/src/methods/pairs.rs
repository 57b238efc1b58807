//! The margin contrastive loss (Hadsell, Chopra and LeCun, 2006) over every pair of a
//! P x K class-balanced batch of one view.

use contrastive_losses::{ContrastiveConfig, ContrastiveLoss};

use super::labeled::OneViewLabeled;
use super::{Registration, Setup, TrainMethod};
use crate::Result;
use crate::config::MethodConfig;

pub(super) const REGISTRATION: Registration = Registration {
    name: "pairs",
    build,
};

fn build(config: &MethodConfig, _: &Setup) -> Result<Box<dyn TrainMethod>> {
    Ok(Box::new(OneViewLabeled(ContrastiveLoss::new(
        ContrastiveConfig::new(config.margin.unwrap_or(1.0))
            .with_pos_margin(config.pos_margin.unwrap_or(0.0)),
    )?)))
}
