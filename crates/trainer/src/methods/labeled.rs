//! The metric-learning methods' shape: one view of class-balanced P x K batches, a loss
//! over the embeddings and their labels (triplet, pairs).

use contrastive_losses::Loss;
use contrastive_tensor::Tensor;

use super::{Sampling, StepInputs, TrainMethod};
use crate::Result;

/// `L` over one view of P x K batches and their labels.
#[derive(Debug)]
pub(super) struct OneViewLabeled<L>(pub(super) L);

impl<L: Loss + std::fmt::Debug + Send> TrainMethod for OneViewLabeled<L> {
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
