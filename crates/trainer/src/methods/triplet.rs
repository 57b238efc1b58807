//! The triplet margin loss with a miner (batch-all, batch-hard, semi-hard) over P x K
//! class-balanced batches of one view.

use contrastive_losses::{Mining, TripletConfig, TripletLoss};

use serde::{Deserialize, Serialize};

use super::labeled::{OneViewLabeled, check_per_class};
use super::{MethodSettings, RunFacts, Setup, TrainMethod};
use crate::Result;
use crate::error::in_range;

/// `[method]` of `name = "triplet"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TripletSettings {
    /// The margin `m` of `max(0, d(a, p) - d(a, n) + m)`.
    pub margin: f64,
    /// The miner: `batch-all`, `batch-hard` or `semi-hard`.
    pub mining: Mining,
    /// Images per class in a batch (P x K batches, K = this).
    pub per_class: usize,
}

impl Default for TripletSettings {
    fn default() -> Self {
        Self {
            margin: 0.2,
            mining: Mining::SemiHard,
            per_class: 4,
        }
    }
}

impl MethodSettings for TripletSettings {
    fn check(&self, run: &RunFacts) -> Result<()> {
        in_range("method.margin", self.margin, 0.0, f64::MAX)?;
        check_per_class(self.per_class, run)
    }

    fn build(&self, _: &Setup) -> Result<Box<dyn TrainMethod>> {
        Ok(Box::new(OneViewLabeled {
            loss: TripletLoss::new(TripletConfig::new(self.margin).with_mining(self.mining))?,
            per_class: self.per_class,
        }))
    }
}
