//! The margin contrastive loss (Hadsell, Chopra and LeCun, 2006) over every pair of a
//! P x K class-balanced batch of one view.

use contrastive_losses::{ContrastiveConfig, ContrastiveLoss};

use serde::{Deserialize, Serialize};

use super::labeled::{OneViewLabeled, check_per_class};
use super::{MethodSettings, RunFacts, Setup, TrainMethod};
use crate::Result;
use crate::error::in_range;

/// `[method]` of `name = "pairs"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PairsSettings {
    /// Negative pairs closer than this are pushed apart (a distance between normalised
    /// embeddings, 0 to 2).
    pub margin: f64,
    /// Positive pairs farther apart than this are pulled together.
    pub pos_margin: f64,
    /// Images per class in a batch (P x K batches, K = this).
    pub per_class: usize,
}

impl Default for PairsSettings {
    fn default() -> Self {
        Self {
            margin: 1.0,
            pos_margin: 0.0,
            per_class: 4,
        }
    }
}

impl MethodSettings for PairsSettings {
    fn check(&self, run: &RunFacts) -> Result<()> {
        in_range("method.margin", self.margin, 0.0, f64::MAX)?;
        in_range("method.pos_margin", self.pos_margin, 0.0, f64::MAX)?;
        check_per_class(self.per_class, run)
    }

    fn build(&self, _: &Setup) -> Result<Box<dyn TrainMethod>> {
        Ok(Box::new(OneViewLabeled {
            loss: ContrastiveLoss::new(
                ContrastiveConfig::new(self.margin).with_pos_margin(self.pos_margin),
            )?,
            per_class: self.per_class,
        }))
    }
}
