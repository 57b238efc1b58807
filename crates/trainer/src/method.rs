//! The learning methods: how many views a batch has, whether it needs labels, and the loss
//! of a forward pass.

use contrastive_losses::{
    ContrastiveConfig, ContrastiveLoss, InfoNce, InfoNceConfig, Loss, Mining, MocoConfig,
    MocoQueue, SupCon, SupConConfig, TripletConfig, TripletLoss,
};
use contrastive_models::{EmbeddingModel, HeadKind};
use contrastive_tensor::{Device, Kind, Tensor};

use crate::Result;
use crate::config::{DEFAULT_WINDOW, MethodConfig};
use crate::error::invalid;

/// One prepared batch of views.
#[derive(Debug)]
pub struct Batch {
    /// The views in groups of one size, each `[V_g * B, C, H_g, W_g]` view-major, the groups
    /// in view order: one group unless the run adds smaller local views (multi-crop).
    pub groups: Vec<Tensor>,
    /// Images in the batch (`B`).
    pub images: i64,
    /// One label per view, view-major, when the method reads labels (for video: each
    /// frame's video).
    pub labels: Option<Tensor>,
    /// For video: each frame's index in its video, one per view.
    pub frames: Option<Tensor>,
}

impl Batch {
    /// The views of a batch that has a single size of view (every method but SimCLR and
    /// SupCon, whose configs refuse local views).
    pub fn single(&self) -> &Tensor {
        assert_eq!(
            self.groups.len(),
            1,
            "Batch::single: the method takes views of one size, got {} groups",
            self.groups.len()
        );
        &self.groups[0]
    }
}

/// A configured method with its loss (and, for MoCo, its queue).
#[derive(Debug)]
pub enum Method {
    /// SimCLR (Chen et al., 2020): NT-Xent between two views of every image; with local
    /// views (multi-crop), every view of an image is a positive of every other.
    Simclr(InfoNce),
    /// MoCo v2 (Chen et al., 2020): queries from the trained encoder, keys from its momentum
    /// copy, negatives from a queue of past keys.
    Moco {
        /// The queue and its InfoNCE loss.
        queue: MocoQueue,
        /// Momentum of the key encoder.
        momentum: f64,
        /// Each view is a query against the other's key, the two losses averaged.
        symmetric: bool,
        /// Whether keys come from the global batch dealt out anew across ranks (`None`:
        /// when batch-norm statistics are each rank's own).
        shuffle_bn: Option<bool>,
    },
    /// Supervised contrastive (Khosla et al., 2020) over two views (and any local ones),
    /// labels decide positives.
    SupCon(SupCon),
    /// Triplet margin loss with a miner, over P x K batches.
    Triplet(TripletLoss),
    /// Margin contrastive loss (Hadsell et al., 2006) over every pair of a P x K batch.
    Pairs(ContrastiveLoss),
    /// Temporal contrast for video: frames of one video at most `window` apart are
    /// positives (multi-positive InfoNCE), frames of other videos negatives, and with a
    /// `gap`, frames of the same video farther apart than it too.
    Temporal {
        /// The masked InfoNCE loss.
        loss: InfoNce,
        /// Largest distance, in frames, of a positive pair.
        window: usize,
        /// Smallest distance, in frames, beyond which frames of one video are negatives.
        gap: Option<usize>,
    },
}

/// MoCo's momentum encoder as the loss calls it: the keys of this rank's images of one view,
/// without gradient, in the global batch's order.
pub type KeyEncoding<'a> = dyn Fn(&Tensor) -> Result<Tensor> + 'a;

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
            "simclr" => Method::Simclr(InfoNce::new(
                InfoNceConfig::new(config.temperature.unwrap_or(0.5))
                    .with_decoupled(config.decoupled.unwrap_or(false)),
            )?),
            "moco-v2" => {
                let moco = MocoConfig::default()
                    .with_queue_size(config.queue_size.unwrap_or(4096))
                    .with_momentum(config.momentum.unwrap_or(0.99))
                    .with_temperature(config.temperature.unwrap_or(0.2));
                let momentum = moco.momentum;
                let keys_per_step = config.moco_keys_per_step(batch_size);
                Method::Moco {
                    queue: MocoQueue::new(moco, dim, keys_per_step, dataset_len, device)?,
                    momentum,
                    symmetric: config.symmetric.unwrap_or(false),
                    shuffle_bn: config.shuffle_bn,
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
            "temporal" => Method::Temporal {
                loss: InfoNce::new(InfoNceConfig::new(config.temperature.unwrap_or(0.2)))?,
                window: config.window.unwrap_or(DEFAULT_WINDOW),
                gap: config.gap,
            },
            "pairs" => Method::Pairs(ContrastiveLoss::new(
                ContrastiveConfig::new(config.margin.unwrap_or(1.0))
                    .with_pos_margin(config.pos_margin.unwrap_or(0.0)),
            )?),
            other => return Err(invalid("method.name", format!("unknown method {other:?}"))),
        })
    }

    /// Views per image the method itself takes (`data.local_views` come on top).
    pub fn views(&self) -> usize {
        match self {
            Method::Triplet(_) | Method::Pairs(_) | Method::Temporal { .. } => 1,
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

    /// Whether batches are frames of a few videos, and the loss reads each frame's video
    /// (as its label) and index.
    pub fn needs_frames(&self) -> bool {
        matches!(self, Method::Temporal { .. })
    }

    /// The projection head this method trains with.
    pub fn head(&self) -> HeadKind {
        match self {
            Method::Moco { .. } => HeadKind::MocoV2,
            _ => HeadKind::Simclr,
        }
    }

    /// The loss of one batch. `embed` runs a model in training mode (under autocast) and
    /// returns `f32` embeddings, so the loss itself is computed in full precision; `keys` is
    /// MoCo's momentum encoder, run the same way without gradient. Each group of same-size
    /// views goes through the model on its own (batch-norm statistics stay within one
    /// resolution). Returns the loss and, for MoCo, the keys to enqueue after the update.
    pub fn loss(
        &self,
        embed: &dyn Fn(&EmbeddingModel, &Tensor) -> Result<Tensor>,
        model: &EmbeddingModel,
        keys: Option<&KeyEncoding<'_>>,
        batch: &Batch,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let labels = || batch.labels.as_ref().expect("labeled methods get labels");
        let all_views = || -> Result<Tensor> {
            let groups = batch
                .groups
                .iter()
                .map(|g| embed(model, g))
                .collect::<Result<Vec<_>>>()?;
            Ok(Tensor::cat(&groups, 0))
        };
        Ok(match self {
            Method::Simclr(loss) => {
                let z = all_views()?;
                let n = batch.images;
                if z.size()[0] == 2 * n {
                    (loss.views(&z.narrow(0, 0, n), &z.narrow(0, n, n))?, None)
                } else {
                    // Multi-crop: every view of an image is a positive of every other.
                    let image =
                        Tensor::arange(n, (Kind::Int64, z.device())).repeat([z.size()[0] / n]);
                    (loss.loss(&z, &image)?, None)
                }
            }
            Method::Moco {
                queue, symmetric, ..
            } => {
                let views = batch.single();
                let half = views.size()[0] / 2;
                let (first, second) = (views.narrow(0, 0, half), views.narrow(0, half, half));
                let key = keys.expect("MoCo has a key encoder");
                // Each view's batch goes through its encoder on its own, so batch-norm
                // statistics never mix a query with its own key's image.
                let q = embed(model, &first)?;
                let k = key(&second)?;
                if *symmetric {
                    let q2 = embed(model, &second)?;
                    let k2 = key(&first)?;
                    let loss = (queue.loss(&q, &k)? + queue.loss(&q2, &k2)?) * 0.5;
                    (loss, Some(Tensor::cat(&[k, k2], 0)))
                } else {
                    (queue.loss(&q, &k)?, Some(k))
                }
            }
            Method::SupCon(loss) => (loss.loss(&all_views()?, labels())?, None),
            Method::Triplet(loss) => (loss.loss(&embed(model, batch.single())?, labels())?, None),
            Method::Pairs(loss) => (loss.loss(&embed(model, batch.single())?, labels())?, None),
            Method::Temporal { loss, window, gap } => {
                let frames = batch
                    .frames
                    .as_ref()
                    .expect("temporal batches carry frame indices");
                let (positive, negative) = temporal_masks(labels(), frames, *window, *gap);
                (
                    loss.masked(&embed(model, batch.single())?, &positive, &negative)?,
                    None,
                )
            }
        })
    }
}

/// The `[N, N]` positive and negative masks of a batch of frames of `videos` `[N]` at
/// `frames` `[N]`: positives are other frames of the same video at most `window` apart,
/// negatives frames of other videos and, with a `gap`, frames of the same video more than
/// `gap` apart (as `contrastive_samplers::temporal_relation` decides pair by pair).
pub fn temporal_masks(
    videos: &Tensor,
    frames: &Tensor,
    window: usize,
    gap: Option<usize>,
) -> (Tensor, Tensor) {
    let n = videos.size()[0];
    let same = videos.unsqueeze(1).eq_tensor(&videos.unsqueeze(0));
    let distance = (frames.unsqueeze(1) - frames.unsqueeze(0)).abs();
    let own = Tensor::eye(n, (Kind::Bool, videos.device()));
    let positive = same
        .logical_and(&distance.le(window as i64))
        .logical_and(&own.logical_not());
    let mut negative = same.logical_not();
    if let Some(gap) = gap {
        negative = negative.logical_or(&same.logical_and(&distance.gt(gap as i64)));
    }
    (positive, negative)
}

#[cfg(test)]
mod tests {
    use super::*;
    use contrastive_samplers::{FrameRef, Relation, temporal_relation};

    #[test]
    fn temporal_masks_agree_with_the_samplers_relation() {
        let refs: Vec<(usize, usize)> =
            vec![(0, 0), (0, 1), (0, 3), (0, 9), (1, 2), (1, 2), (1, 30)];
        let videos = Tensor::from_slice(&refs.iter().map(|r| r.0 as i64).collect::<Vec<_>>());
        let frames = Tensor::from_slice(&refs.iter().map(|r| r.1 as i64).collect::<Vec<_>>());
        for gap in [None, Some(5)] {
            let (pos, neg) = temporal_masks(&videos, &frames, 2, gap);
            for (a, &(va, fa)) in refs.iter().enumerate() {
                for (b, &(vb, fb)) in refs.iter().enumerate() {
                    let p = pos.int64_value(&[a as i64, b as i64]) == 1;
                    let q = neg.int64_value(&[a as i64, b as i64]) == 1;
                    let relation = temporal_relation(
                        FrameRef {
                            video: va,
                            frame: fa,
                        },
                        FrameRef {
                            video: vb,
                            frame: fb,
                        },
                        2,
                        gap,
                    );
                    // Two views of one frame (a != b, same frame) are positives here.
                    let expected = match relation {
                        Relation::Ignored if a != b && fa == fb && va == vb => (true, false),
                        Relation::Positive => (true, false),
                        Relation::Negative => (false, true),
                        Relation::Ignored => (false, false),
                    };
                    assert_eq!((p, q), expected, "{a} {b} gap {gap:?}");
                }
            }
        }
    }
}
