//! The learning methods: how many views a batch has, whether it needs labels, and the loss
//! of a forward pass.

use contrastive_losses::{
    ContrastiveConfig, ContrastiveLoss, InfoNce, InfoNceConfig, Loss, Mining, MocoConfig,
    MocoQueue, SupCon, SupConConfig, TripletConfig, TripletLoss,
};
use contrastive_models::{EmbeddingModel, HeadKind};
use contrastive_tensor::{Device, Tensor, no_grad};

use crate::Result;
use crate::config::MethodConfig;
use crate::error::invalid;

/// A configured method with its loss (and, for MoCo, its queue).
#[derive(Debug)]
pub enum Method {
    /// SimCLR (Chen et al., 2020): NT-Xent between two views of every image.
    Simclr(InfoNce),
    /// MoCo v2 (Chen et al., 2020): queries from the trained encoder, keys from its momentum
    /// copy, negatives from a queue of past keys.
    Moco {
        /// The queue and its InfoNCE loss.
        queue: MocoQueue,
        /// Momentum of the key encoder.
        momentum: f64,
    },
    /// Supervised contrastive (Khosla et al., 2020) over two views, labels decide positives.
    SupCon(SupCon),
    /// Triplet margin loss with a miner, over P x K batches.
    Triplet(TripletLoss),
    /// Margin contrastive loss (Hadsell et al., 2006) over every pair of a P x K batch.
    Pairs(ContrastiveLoss),
}

impl Method {
    /// Builds the method of `config`; MoCo's queue needs the embedding width, the batch
    /// size and the dataset size (a queue may not outgrow the dataset).
    pub fn new(
        config: &MethodConfig,
        dim: i64,
        batch_size: usize,
        dataset_len: usize,
        device: Device,
    ) -> Result<Self> {
        Ok(match config.name.as_str() {
            "simclr" => Method::Simclr(InfoNce::new(InfoNceConfig::new(
                config.temperature.unwrap_or(0.5),
            ))?),
            "moco-v2" => {
                let moco = MocoConfig::default()
                    .with_queue_size(config.queue_size.unwrap_or(4096))
                    .with_momentum(config.momentum.unwrap_or(0.99))
                    .with_temperature(config.temperature.unwrap_or(0.2));
                let momentum = moco.momentum;
                Method::Moco {
                    queue: MocoQueue::new(moco, dim, batch_size, dataset_len, device)?,
                    momentum,
                }
            }
            "supcon" => Method::SupCon(SupCon::new(SupConConfig::new(
                config.temperature.unwrap_or(0.1),
            ))?),
            "triplet" => {
                let mining = match config.mining.as_deref().unwrap_or("semi-hard") {
                    "batch-all" => Mining::BatchAll,
                    "batch-hard" => Mining::BatchHard,
                    _ => Mining::SemiHard,
                };
                Method::Triplet(TripletLoss::new(
                    TripletConfig::new(config.margin.unwrap_or(0.2)).with_mining(mining),
                )?)
            }
            "pairs" => Method::Pairs(ContrastiveLoss::new(
                ContrastiveConfig::new(config.margin.unwrap_or(0.5))
                    .with_pos_margin(config.pos_margin.unwrap_or(0.0)),
            )?),
            other => return Err(invalid("method.name", format!("unknown method {other:?}"))),
        })
    }

    /// Views per image in a batch.
    pub fn views(&self) -> usize {
        match self {
            Method::Triplet(_) | Method::Pairs(_) => 1,
            _ => 2,
        }
    }

    /// Whether batches are P x K class-balanced and the loss reads labels.
    pub fn needs_labels(&self) -> bool {
        matches!(
            self,
            Method::SupCon(_) | Method::Triplet(_) | Method::Pairs(_)
        )
    }

    /// The projection head this method trains with.
    pub fn head(&self) -> HeadKind {
        match self {
            Method::Moco { .. } => HeadKind::MocoV2,
            _ => HeadKind::Simclr,
        }
    }

    /// The loss of one batch: `views` is `[V * B, C, H, W]`, view-major; `labels` `[V * B]`
    /// when the method needs them; `key` is MoCo's momentum encoder. `embed` runs a model
    /// in training mode (under autocast) and returns `f32` embeddings, so the loss itself is
    /// computed in full precision. Returns the loss and, for MoCo, the keys to enqueue after
    /// the update.
    pub fn loss(
        &self,
        embed: &dyn Fn(&EmbeddingModel, &Tensor) -> Result<Tensor>,
        model: &EmbeddingModel,
        key: Option<&EmbeddingModel>,
        views: &Tensor,
        labels: Option<&Tensor>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let labels = || labels.expect("labeled methods get labels");
        Ok(match self {
            Method::Simclr(loss) => {
                let z = embed(model, views)?;
                let half = z.size()[0] / 2;
                (
                    loss.views(&z.narrow(0, 0, half), &z.narrow(0, half, half))?,
                    None,
                )
            }
            Method::Moco { queue, .. } => {
                let half = views.size()[0] / 2;
                let q = embed(model, &views.narrow(0, 0, half))?;
                let key = key.expect("MoCo has a key encoder");
                let k = no_grad(|| embed(key, &views.narrow(0, half, half)))?;
                (queue.loss(&q, &k)?, Some(k))
            }
            Method::SupCon(loss) => (loss.loss(&embed(model, views)?, labels())?, None),
            Method::Triplet(loss) => (loss.loss(&embed(model, views)?, labels())?, None),
            Method::Pairs(loss) => (loss.loss(&embed(model, views)?, labels())?, None),
        })
    }
}
