//! MoCo v2 (Chen et al., 2020): queries from the trained encoder, keys from its momentum
//! copy, negatives from a queue of past keys.

use std::collections::HashMap;

use contrastive_losses::{MocoConfig, MocoQueue};
use contrastive_models::{HeadKind, ModelConfig};
use contrastive_tensor::{Tensor, nn::VarStore};

use super::momentum::MomentumEncoder;
use serde::{Deserialize, Serialize};

use super::{MethodSettings, attached, Progress, RunFacts, Setup, StepInputs, TrainMethod, saved};
use crate::Result;
use crate::error::{at_least, in_range, invalid, positive};

/// `[method]` of `name = "moco-v2"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MocoSettings {
    /// Softmax temperature.
    pub temperature: f64,
    /// Keys in the queue: a multiple of the keys one step queues (the batch, or both views'
    /// keys when `symmetric`).
    pub queue_size: usize,
    /// Momentum of the key encoder.
    pub momentum: f64,
    /// Both views take both roles, query and key, and the two losses are averaged
    /// (false: the first view is the query, the second the key).
    pub symmetric: bool,
    /// With several ranks, the key encoder sees the global batch's images dealt out to the
    /// ranks in a fresh random order each step, so a rank's keys are normalised with
    /// statistics of mostly other images than its queries' (about 1/W of them its own, as in
    /// MoCo's own code: He et al., 2020, "Shuffling BN"). `auto` (the default): on unless
    /// `model.sync_bn`, whose statistics span the whole batch whatever the deal; `true` or
    /// `false`. Nothing to do on one process.
    pub shuffle_bn: ShuffleBn,
}

/// `method.shuffle_bn`: `"auto"`, `true` or `false` (as TOML spells them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShuffleBn {
    /// `"auto"`: on unless batch-norm statistics span the global batch.
    Auto,
    /// `true`.
    On,
    /// `false`.
    Off,
}

impl Serialize for ShuffleBn {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ShuffleBn::Auto => serializer.serialize_str("auto"),
            ShuffleBn::On => serializer.serialize_bool(true),
            ShuffleBn::Off => serializer.serialize_bool(false),
        }
    }
}

impl<'de> Deserialize<'de> for ShuffleBn {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Choice;
        impl serde::de::Visitor<'_> for Choice {
            type Value = ShuffleBn;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("true, false or \"auto\"")
            }

            fn visit_bool<E: serde::de::Error>(self, on: bool) -> Result<ShuffleBn, E> {
                Ok(if on { ShuffleBn::On } else { ShuffleBn::Off })
            }

            fn visit_str<E: serde::de::Error>(self, word: &str) -> Result<ShuffleBn, E> {
                match word {
                    "auto" => Ok(ShuffleBn::Auto),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(word), &self)),
                }
            }
        }
        deserializer.deserialize_any(Choice)
    }
}

impl ShuffleBn {
    /// Whether to deal the keys out, given whether statistics span the global batch.
    fn applies(self, sync_bn: bool) -> bool {
        match self {
            ShuffleBn::On => true,
            ShuffleBn::Off => false,
            ShuffleBn::Auto => !sync_bn,
        }
    }
}

impl Default for MocoSettings {
    fn default() -> Self {
        Self {
            temperature: 0.2,
            queue_size: 4096,
            momentum: 0.99,
            symmetric: false,
            shuffle_bn: ShuffleBn::Auto,
        }
    }
}

impl MocoSettings {
    /// Keys one step queues with batches of `batch_size` images: the batch, or both views'
    /// keys when `symmetric`.
    pub fn keys_per_step(&self, batch_size: usize) -> usize {
        if self.symmetric {
            2 * batch_size
        } else {
            batch_size
        }
    }
}

impl MethodSettings for MocoSettings {
    fn check(&self, run: &RunFacts) -> Result<()> {
        positive("method.temperature", self.temperature)?;
        in_range("method.momentum", self.momentum, 0.0, 1.0)?;
        at_least("method.queue_size", self.queue_size, 1)?;
        let keys = self.keys_per_step(run.batch_size);
        if !self.queue_size.is_multiple_of(keys) {
            let what = if self.symmetric {
                "2 x data.batch_size"
            } else {
                "data.batch_size"
            };
            return Err(invalid(
                "method.queue_size",
                format!("must be a multiple of {what} ({keys})"),
            ));
        }
        Ok(())
    }

    fn build(&self, setup: &Setup) -> Result<Box<dyn TrainMethod>> {
        let moco = MocoConfig::default()
            .with_queue_size(self.queue_size)
            .with_momentum(self.momentum)
            .with_temperature(self.temperature);
        Ok(Box::new(Moco {
            queue: MocoQueue::new(
                moco,
                setup.dim,
                self.keys_per_step(setup.batch_size),
                setup.dataset_len,
                setup.device,
            )?,
            momentum: self.momentum,
            symmetric: self.symmetric,
            shuffle_bn: self.shuffle_bn,
            key: None,
            pending: None,
        }))
    }
}

#[derive(Debug)]
struct Moco {
    /// The queue and its InfoNCE loss.
    queue: MocoQueue,
    /// Momentum of the key encoder.
    momentum: f64,
    /// Each view is a query against the other's key, the two losses averaged.
    symmetric: bool,
    /// Whether keys come from the global batch dealt out anew across ranks.
    shuffle_bn: ShuffleBn,
    /// The key encoder, once attached.
    key: Option<MomentumEncoder>,
    /// This step's keys, queued after the optimiser's step.
    pending: Option<Tensor>,
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
        attached(&self.key)?.follow(online, self.momentum)
    }

    fn loss(&mut self, step: &StepInputs<'_>) -> Result<Tensor> {
        let (first, second) = step.batch.two_views();
        let key = &attached(&self.key)?.model;
        let shuffle = self.shuffle_bn.applies(step.sync_bn);
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
        let key = self.key.iter().flat_map(|k| k.state());
        key.chain(self.queue.state()).collect()
    }

    fn restore(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        attached(&self.key)?.restore(state)?;
        self.queue
            .restore(saved(state, "moco.queue")?, saved(state, "moco.next")?)?;
        Ok(())
    }

    fn encoders(&self) -> Vec<&VarStore> {
        self.key.iter().map(|k| &k.vs).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_bn_is_auto_unless_set() {
        let read = |text: &str| toml::from_str::<MocoSettings>(text).map(|m| m.shuffle_bn);
        let auto = read("").unwrap();
        assert_eq!(auto, read("shuffle_bn = \"auto\"").unwrap());
        assert!(auto.applies(false) && !auto.applies(true));
        for (text, on) in [("shuffle_bn = true", true), ("shuffle_bn = false", false)] {
            let set = read(text).unwrap();
            assert_eq!((set.applies(false), set.applies(true)), (on, on), "{text}");
        }
        let err = read("shuffle_bn = \"sometimes\"").unwrap_err().to_string();
        assert!(err.contains("expected true, false or \"auto\""), "{err}");
        let written = toml::to_string(&MocoSettings::default()).unwrap();
        assert!(written.contains("shuffle_bn = \"auto\""), "{written}");
    }
}
