//! MoCo v2 (Chen et al., 2020): queries from the trained encoder, keys from its momentum
//! copy, negatives from a queue of past keys.

use std::collections::HashMap;

use contrastive_losses::{MocoConfig, MocoQueue};
use contrastive_models::{HeadKind, ModelConfig};
use contrastive_tensor::{Tensor, nn::VarStore};

use super::momentum::MomentumEncoder;
use super::{Progress, Registration, Setup, StepInputs, TrainMethod, saved};
use crate::Result;
use crate::config::MethodConfig;

pub(super) const REGISTRATION: Registration = Registration {
    name: "moco-v2",
    build,
};

fn build(config: &MethodConfig, setup: &Setup) -> Result<Box<dyn TrainMethod>> {
    let moco = MocoConfig::default()
        .with_queue_size(config.queue_size.unwrap_or(4096))
        .with_momentum(config.momentum.unwrap_or(0.99))
        .with_temperature(config.temperature.unwrap_or(0.2));
    let momentum = moco.momentum;
    let keys_per_step = config.moco_keys_per_step(setup.batch_size);
    Ok(Box::new(Moco {
        queue: MocoQueue::new(
            moco,
            setup.dim,
            keys_per_step,
            setup.dataset_len,
            setup.device,
        )?,
        momentum,
        symmetric: config.symmetric.unwrap_or(false),
        shuffle_bn: config.shuffle_bn,
        key: None,
        pending: None,
    }))
}

#[derive(Debug)]
struct Moco {
    /// The queue and its InfoNCE loss.
    queue: MocoQueue,
    /// Momentum of the key encoder.
    momentum: f64,
    /// Each view is a query against the other's key, the two losses averaged.
    symmetric: bool,
    /// Whether keys come from the global batch dealt out anew across ranks (`None`: when
    /// batch-norm statistics are each rank's own).
    shuffle_bn: Option<bool>,
    /// The key encoder, once attached.
    key: Option<MomentumEncoder>,
    /// This step's keys, queued after the optimiser's step.
    pending: Option<Tensor>,
}

impl Moco {
    fn key(&self) -> &MomentumEncoder {
        self.key.as_ref().expect("attached before training")
    }
}

impl TrainMethod for Moco {
    fn head(&self) -> HeadKind {
        HeadKind::MocoV2
    }

    fn attach(&mut self, online: &VarStore, model: ModelConfig) -> Result<()> {
        self.key = Some(MomentumEncoder::copy_of(online, model, "key.")?);
        Ok(())
    }

    fn before_step(&mut self, online: &VarStore, _: Progress) -> Result<()> {
        self.key().follow(online, self.momentum)
    }

    fn loss(&mut self, step: &StepInputs<'_>) -> Result<Tensor> {
        let (first, second) = step.batch.two_views();
        let key = &self.key().model;
        let shuffle = self.shuffle_bn.unwrap_or(!step.sync_bn);
        // Each view's batch goes through its encoder on its own, so batch-norm statistics
        // never mix a query with its own key's image.
        let q = (step.embed)(step.model, &first)?;
        let k = (step.encode)(key, &second, shuffle)?;
        let (loss, keys) = if self.symmetric {
            let q2 = (step.embed)(step.model, &second)?;
            let k2 = (step.encode)(key, &first, shuffle)?;
            let loss = (self.queue.loss(&q, &k)? + self.queue.loss(&q2, &k2)?) * 0.5;
            (loss, Tensor::cat(&[k, k2], 0))
        } else {
            (self.queue.loss(&q, &k)?, k)
        };
        self.pending = Some(keys);
        Ok(loss)
    }

    fn after_step(&mut self) -> Result<()> {
        if let Some(keys) = self.pending.take() {
            self.queue.enqueue(&keys)?;
        }
        Ok(())
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut state = self.key().state();
        state.extend(self.queue.state());
        state
    }

    fn restore(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        self.key().restore(state)?;
        self.queue
            .restore(saved(state, "moco.queue")?, saved(state, "moco.next")?)?;
        Ok(())
    }

    fn encoders(&self) -> Vec<&VarStore> {
        vec![&self.key().vs]
    }
}
