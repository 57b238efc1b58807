//! The metric-learning methods' shape: one view of class-balanced P x K batches, a loss
//! over the embeddings and their labels (triplet, pairs).

use contrastive_losses::Loss;
use contrastive_tensor::Tensor;

use super::{RunFacts, Sampling, StepInputs, TrainMethod};
use crate::Result;
use crate::error::{at_least, invalid};

/// `L` over one view of P x K batches and their labels.
#[derive(Debug)]
pub(super) struct OneViewLabeled<L> {
    /// The loss over embeddings and labels.
    pub(super) loss: L,
    /// Images per class in a batch (K).
    pub(super) per_class: usize,
}

/// An error unless `per_class` (`method.per_class`) is at least 2 and divides the batch.
pub(super) fn check_per_class(per_class: usize, run: &RunFacts) -> Result<()> {
    at_least("method.per_class", per_class, 2)?;
    if !run.batch_size.is_multiple_of(per_class) {
        return Err(invalid(
            "method.per_class",
            format!(
                "must divide data.batch_size ({}), got {per_class}",
                run.batch_size
            ),
        ));
    }
    Ok(())
}

impl<L: Loss + std::fmt::Debug + Send> TrainMethod for OneViewLabeled<L> {
    fn views(&self) -> usize {
        1
    }

    fn sampling(&self) -> Sampling {
        Sampling::ClassBalanced {
            per_class: self.per_class,
        }
    }

    fn loss(&mut self, step: &StepInputs<'_>) -> Result<Tensor> {
        let z = (step.embed)(step.model, step.batch.single())?;
        Ok(self.loss.loss(&z, step.batch.labels())?)
    }
}
