//! MoCo (He et al., 2020; v2: Chen et al., 2020): a key encoder that follows the query encoder
//! by a momentum (EMA) update, and a FIFO queue of past keys used as negatives.

use contrastive_tensor::{Device, Kind, Tensor, nn::VarStore, no_grad};
use serde::{Deserialize, Serialize};

use crate::error::invalid;
use crate::pairs::{self, check_temperature};
use crate::ring::Ring;
use crate::{Error, Result};

/// Settings of [`MocoQueue`] and the momentum update; the defaults are MoCo v2's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MocoConfig {
    /// Keys kept as negatives (a multiple of the batch size, at most the dataset size).
    pub queue_size: usize,
    /// EMA factor of the key encoder, in `[0, 1]`.
    pub momentum: f64,
    /// Softmax temperature (> 0).
    pub temperature: f64,
}

impl Default for MocoConfig {
    fn default() -> Self {
        Self {
            queue_size: 65_536,
            momentum: 0.999,
            temperature: 0.2,
        }
    }
}

impl MocoConfig {
    /// Sets the queue size.
    pub fn with_queue_size(self, queue_size: usize) -> Self {
        Self { queue_size, ..self }
    }

    /// Sets the momentum.
    pub fn with_momentum(self, momentum: f64) -> Self {
        Self { momentum, ..self }
    }

    /// Sets the temperature.
    pub fn with_temperature(self, temperature: f64) -> Self {
        Self {
            temperature,
            ..self
        }
    }

    /// Checks the fields against a run's batch size and dataset size.
    pub fn validate(&self, batch_size: usize, dataset_len: usize) -> Result<()> {
        check_temperature(self.temperature)?;
        if !(0.0..=1.0).contains(&self.momentum) {
            return Err(invalid(
                "momentum",
                format!("must be in [0, 1], got {}", self.momentum),
            ));
        }
        if batch_size == 0 || self.queue_size == 0 || !self.queue_size.is_multiple_of(batch_size) {
            return Err(invalid(
                "queue_size",
                format!(
                    "must be a positive multiple of the batch size {batch_size}, got {}",
                    self.queue_size
                ),
            ));
        }
        if self.queue_size > dataset_len {
            return Err(invalid(
                "queue_size",
                format!(
                    "{} is larger than the dataset ({dataset_len} items): keys would repeat",
                    self.queue_size
                ),
            ));
        }
        Ok(())
    }
}

/// The queue of normalised keys and the InfoNCE loss against it.
#[derive(Debug)]
pub struct MocoQueue {
    config: MocoConfig,
    keys: Ring,
}

const OP: &str = "MoCo";

impl MocoQueue {
    /// A queue of `dim`-wide keys, started with random unit vectors (as the MoCo code does).
    pub fn new(
        config: MocoConfig,
        dim: i64,
        batch_size: usize,
        dataset_len: usize,
        device: Device,
    ) -> Result<Self> {
        config.validate(batch_size, dataset_len)?;
        let keys = pairs::normalize(&Tensor::randn(
            [config.queue_size as i64, dim],
            (Kind::Float, device),
        ));
        Ok(Self {
            config,
            keys: Ring::new(keys, OP),
        })
    }

    /// The keys, `[queue_size, dim]`.
    pub fn keys(&self) -> &Tensor {
        self.keys.rows()
    }

    /// Cross-entropy of `[q.k+, q.queue] / tau` with the positive first: queries `q` `[B, D]`
    /// against their keys `k` `[B, D]` (no gradient flows into keys) and every queued key.
    pub fn loss(&self, queries: &Tensor, keys: &Tensor) -> Result<Tensor> {
        let qk = pairs::same_shapes(OP, &[("queries", queries), ("keys", keys)])?;
        let dim = self.keys().size()[1];
        if qk[0].size()[1] != dim {
            return Err(Error::Shape {
                op: OP,
                message: format!(
                    "embeddings are {}-wide, the queue holds {dim}",
                    qk[0].size()[1]
                ),
            });
        }
        let q = pairs::normalize(&qk[0]);
        let k = pairs::normalize(&qk[1]).detach();
        let l_pos = (&q * &k).sum_dim_intlist(1, true, None::<Kind>);
        let l_neg = q.matmul(&self.keys().to_kind(q.kind()).tr());
        let logits = Tensor::cat(&[&l_pos, &l_neg], 1) / self.config.temperature;
        // Cross-entropy with the positive (column 0) as the target, in the logits' precision.
        let per_query = logits.logsumexp([1], false) - logits.select(1, 0);
        Ok(per_query.mean(None::<Kind>))
    }

    /// Puts `keys` (normalised, detached) in place of the oldest ones. Call after the loss.
    pub fn enqueue(&mut self, keys: &Tensor) -> Result<()> {
        let k = pairs::embeddings(OP, "keys", keys)?;
        self.keys.push(&pairs::normalize(&k))
    }

    /// The queue as named tensors for a checkpoint: `moco.queue` and `moco.next`.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.keys.state("moco.queue", "moco.next")
    }

    /// Restores what [`MocoQueue::state`] saved; shapes must match this queue.
    pub fn restore(&mut self, queue: &Tensor, next: &Tensor) -> Result<()> {
        self.keys.restore(queue, next)
    }
}

/// `key = m * key + (1 - m) * query` for every floating-point variable (parameters and
/// buffers such as batch-norm statistics) of the key encoder; other variables are copied.
/// Both stores must hold the same names and shapes.
pub fn momentum_update(key: &VarStore, query: &VarStore, momentum: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&momentum) {
        return Err(invalid(
            "momentum",
            format!("must be in [0, 1], got {momentum}"),
        ));
    }
    let (key_vars, query_vars) = (key.variables(), query.variables());
    if key_vars.len() != query_vars.len() {
        return Err(Error::Shape {
            op: "momentum update",
            message: format!(
                "key encoder has {} variables, query encoder {}",
                key_vars.len(),
                query_vars.len()
            ),
        });
    }
    for (name, k) in &key_vars {
        let q = query_vars.get(name).ok_or_else(|| Error::Shape {
            op: "momentum update",
            message: format!("query encoder has no variable {name:?}"),
        })?;
        if q.size() != k.size() {
            return Err(Error::Shape {
                op: "momentum update",
                message: format!(
                    "{name:?} is {:?} in the key encoder and {:?} in the query encoder",
                    k.size(),
                    q.size()
                ),
            });
        }
    }
    no_grad(|| {
        for (name, k) in &key_vars {
            let mut k = k.shallow_clone();
            let q = &query_vars[name];
            if k.is_floating_point() {
                let _ = k.g_mul_scalar_(momentum);
                let _ = k.g_add_(&(q * (1.0 - momentum)));
            } else {
                k.copy_(q);
            }
        }
    });
    Ok(())
}
