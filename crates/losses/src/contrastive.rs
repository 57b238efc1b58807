//! The margin contrastive loss (Hadsell, Chopra and LeCun, 2006).

use contrastive_tensor::{Kind, Tensor};
use serde::{Deserialize, Serialize};

use crate::pairs::{self, Distance, check_margin};
use crate::{Error, Loss, Result};

/// Settings of [`ContrastiveLoss`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContrastiveConfig {
    /// Negatives closer than this are pushed apart (`m`, >= 0).
    pub margin: f64,
    /// Positives farther than this are pulled together (0: always; >= 0).
    #[serde(default)]
    pub pos_margin: f64,
    /// Distance between embeddings.
    #[serde(default)]
    pub distance: Distance,
    /// L2-normalise embeddings before measuring (as pytorch-metric-learning does by default).
    #[serde(default = "pairs::default_true")]
    pub normalize: bool,
}

impl ContrastiveConfig {
    /// Euclidean distance on normalised embeddings, no positive margin.
    pub fn new(margin: f64) -> Self {
        Self {
            margin,
            pos_margin: 0.0,
            distance: Distance::Euclidean,
            normalize: true,
        }
    }

    /// Sets the positive margin.
    pub fn with_pos_margin(self, pos_margin: f64) -> Self {
        Self { pos_margin, ..self }
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
        check_margin("margin", self.margin)?;
        check_margin("pos_margin", self.pos_margin)
    }
}

/// `y * max(0, d - m_pos)^2 + (1 - y) * max(0, m - d)^2`, averaged over pairs: `y = 1` for a
/// positive pair, 0 for a negative one.
#[derive(Debug, Clone)]
pub struct ContrastiveLoss {
    config: ContrastiveConfig,
}

impl ContrastiveLoss {
    /// Builds the loss; the config is validated.
    pub fn new(config: ContrastiveConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    fn per_pair(&self, d: &Tensor, positive: &Tensor) -> Tensor {
        let pull = (d - self.config.pos_margin).relu().square();
        let push = (d.neg() + self.config.margin).relu().square();
        pull.where_self(positive, &push)
    }

    /// The loss over explicit pairs `(a[i], b[i])`; `same[i]` (bool or 0/1) says which are
    /// positive.
    pub fn pairs(&self, a: &Tensor, b: &Tensor, same: &Tensor) -> Result<Tensor> {
        const OP: &str = "contrastive loss";
        let ab = pairs::same_shapes(OP, &[("a", a), ("b", b)])?;
        if same.size() != [ab[0].size()[0]] {
            return Err(Error::Shape {
                op: OP,
                message: format!(
                    "`same` must be [{}], got {:?}",
                    ab[0].size()[0],
                    same.size()
                ),
            });
        }
        let d = pairs::paired(&ab[0], &ab[1], self.config.distance, self.config.normalize);
        let positive = same.to_device(d.device()).to_kind(Kind::Bool);
        Ok(self.per_pair(&d, &positive).mean(None::<Kind>))
    }
}

impl Loss for ContrastiveLoss {
    /// Every pair `i < j` of the batch, positive when the labels are equal.
    fn loss(&self, embeddings: &Tensor, labels: &Tensor) -> Result<Tensor> {
        const OP: &str = "contrastive loss";
        let x = pairs::embeddings(OP, "embeddings", embeddings)?;
        let labels = pairs::labels(OP, labels, &x)?;
        let n = x.size()[0];
        if n < 2 {
            return Err(Error::Shape {
                op: OP,
                message: "needs at least 2 embeddings".into(),
            });
        }
        let d = pairs::pairwise(&x, self.config.distance, self.config.normalize);
        let (positive, _) = pairs::label_masks(&labels);
        let upper = Tensor::ones([n, n], (Kind::Bool, x.device())).triu(1);
        Ok(self
            .per_pair(&d, &positive)
            .masked_select(&upper)
            .mean(None::<Kind>))
    }
}
