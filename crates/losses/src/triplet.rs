//! The triplet loss `max(0, d(a, p) - d(a, n) + m)` with in-batch mining.

use contrastive_tensor::{Kind, Tensor};
use serde::{Deserialize, Serialize};

use crate::pairs::{self, Distance, check_margin};
use crate::{Error, Loss, Result};

/// Which triplets of a labeled batch the loss uses (`batch-all`, `batch-hard` and
/// `semi-hard` to serde).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Mining {
    /// Every valid triplet; the mean over those with a non-zero loss (Hermans et al., 2017).
    BatchAll,
    /// Per anchor, the farthest positive and the closest negative (Hermans et al., 2017).
    #[default]
    BatchHard,
    /// Per positive pair, the closest negative farther than the positive; the farthest
    /// negative where none is (Schroff et al., FaceNet, 2015; as TensorFlow Addons).
    SemiHard,
}

/// Settings of [`TripletLoss`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TripletConfig {
    /// The margin `m` (>= 0); unused with `soft_margin`.
    pub margin: f64,
    /// Triplet mining for labeled batches.
    #[serde(default)]
    pub mining: Mining,
    /// `softplus(d(a, p) - d(a, n))` instead of the hinge (Hermans et al., 2017).
    #[serde(default)]
    pub soft_margin: bool,
    /// Distance between embeddings.
    #[serde(default)]
    pub distance: Distance,
    /// L2-normalise embeddings first.
    #[serde(default = "pairs::default_true")]
    pub normalize: bool,
}

impl TripletConfig {
    /// Batch-hard mining, hinge with `margin`, Euclidean distance on normalised embeddings.
    pub fn new(margin: f64) -> Self {
        Self {
            margin,
            mining: Mining::BatchHard,
            soft_margin: false,
            distance: Distance::Euclidean,
            normalize: true,
        }
    }

    /// Sets the mining strategy.
    pub fn with_mining(self, mining: Mining) -> Self {
        Self { mining, ..self }
    }

    /// Uses the soft margin.
    pub fn with_soft_margin(self, soft_margin: bool) -> Self {
        Self {
            soft_margin,
            ..self
        }
    }

    /// Sets the distance.
    pub fn with_distance(self, distance: Distance) -> Self {
        Self { distance, ..self }
    }

    /// Sets whether embeddings are L2-normalised first.
    pub fn with_normalize(self, normalize: bool) -> Self {
        Self { normalize, ..self }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        check_margin("margin", self.margin)
    }
}

/// The triplet loss, on explicit triplets or mined from a labeled batch.
#[derive(Debug, Clone)]
pub struct TripletLoss {
    config: TripletConfig,
}

const OP: &str = "triplet loss";

impl TripletLoss {
    /// Builds the loss; the config is validated.
    pub fn new(config: TripletConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    /// The hinge (or soft margin) of `d(a, p) - d(a, n)`.
    fn term(&self, gap: &Tensor) -> Tensor {
        if self.config.soft_margin {
            gap.softplus()
        } else {
            (gap + self.config.margin).relu()
        }
    }

    /// The mean loss over explicit triplets `(anchor[i], positive[i], negative[i])`.
    pub fn triplets(
        &self,
        anchor: &Tensor,
        positive: &Tensor,
        negative: &Tensor,
    ) -> Result<Tensor> {
        let t = pairs::same_shapes(
            OP,
            &[
                ("anchor", anchor),
                ("positive", positive),
                ("negative", negative),
            ],
        )?;
        let (distance, normalize) = (self.config.distance, self.config.normalize);
        let gap = pairs::paired(&t[0], &t[1], distance, normalize)
            - pairs::paired(&t[0], &t[2], distance, normalize);
        Ok(self.term(&gap).mean(None::<Kind>))
    }
}

impl Loss for TripletLoss {
    fn loss(&self, embeddings: &Tensor, labels: &Tensor) -> Result<Tensor> {
        let x = pairs::embeddings(OP, "embeddings", embeddings)?;
        let labels = pairs::labels(OP, labels, &x)?;
        let d = pairs::pairwise(&x, self.config.distance, self.config.normalize);
        let (pos, neg) = pairs::label_masks(&labels);
        if !bool::try_from(pos.any())? || !bool::try_from(neg.any())? {
            return Err(Error::Shape {
                op: OP,
                message: "the batch needs positive and negative pairs".into(),
            });
        }
        let inf = |sign: f64| Tensor::full_like(&d, sign * f64::INFINITY);
        match self.config.mining {
            Mining::BatchAll => {
                // Per positive pair (a, p), every negative n of a: [pairs, N], not [N, N, N].
                let (d_ap, d_an, neg_a) = per_positive_pair(&d, &pos, &neg)?;
                let losses = self.term(&(d_ap - &d_an)).masked_select(&neg_a);
                let active = losses.gt(1e-16);
                Ok(if bool::try_from(active.any())? {
                    losses.masked_select(&active).mean(None::<Kind>)
                } else {
                    losses.sum(None::<Kind>) * 0.0
                })
            }
            Mining::BatchHard => {
                let hardest_pos = d.where_self(&pos, &inf(-1.0)).amax([1], false);
                let hardest_neg = d.where_self(&neg, &inf(1.0)).amin([1], false);
                let anchors = pos.any_dim(1, false).logical_and(&neg.any_dim(1, false));
                let gap = (hardest_pos - hardest_neg).masked_select(&anchors);
                Ok(self.term(&gap).mean(None::<Kind>))
            }
            Mining::SemiHard => {
                let (d_ap, d_an, neg_a) = per_positive_pair(&d, &pos, &neg)?;
                let farther = neg_a.logical_and(&d_an.gt_tensor(&d_ap)); // [pairs, N]
                let inf = |sign: f64| Tensor::full_like(&d_an, sign * f64::INFINITY);
                let closest_farther = d_an.where_self(&farther, &inf(1.0)).amin([1], true);
                let farthest = d_an.where_self(&neg_a, &inf(-1.0)).amax([1], true);
                let has_farther = farther.any_dim(1, true);
                let chosen = closest_farther.where_self(&has_farther, &farthest);
                Ok(self.term(&(d_ap - chosen)).mean(None::<Kind>))
            }
        }
    }
}

/// For each positive pair `(a, p)` of the batch, in row-major order: `d(a, p)` as
/// `[pairs, 1]`, the row `d(a, .)` as `[pairs, N]` and the row of `a`'s negatives as a mask.
/// Mining over these costs `pairs x N` (with P x K batches, N (K - 1) x N) instead of the
/// `N x N x N` of every (anchor, positive, negative).
fn per_positive_pair(d: &Tensor, pos: &Tensor, neg: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let pairs = pos.f_nonzero()?; // [pairs, 2]: (a, p)
    let anchors = pairs.select(1, 0);
    let d_ap = d.masked_select(pos).unsqueeze(1);
    Ok((
        d_ap,
        d.index_select(0, &anchors),
        neg.index_select(0, &anchors),
    ))
}
