//! Supervised contrastive loss (Khosla et al., 2020), the `L_out` form.

use contrastive_tensor::{Kind, Tensor};
use serde::{Deserialize, Serialize};

use crate::pairs::{self, check_temperature};
use crate::{Error, Loss, Result};

/// Settings of [`SupCon`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupConConfig {
    /// Softmax temperature (> 0); the paper uses 0.1.
    pub temperature: f64,
}

impl SupConConfig {
    /// SupCon at `temperature`.
    pub fn new(temperature: f64) -> Self {
        Self { temperature }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        check_temperature(self.temperature)
    }
}

/// For each anchor with positives `P(a)`: `-1/|P(a)| sum_p log(exp(s_ap) / sum_{k != a}
/// exp(s_ak))`, averaged over those anchors; equal to pytorch-metric-learning's `SupConLoss`.
#[derive(Debug, Clone)]
pub struct SupCon {
    config: SupConConfig,
}

impl SupCon {
    /// Builds the loss; the config is validated.
    pub fn new(config: SupConConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }
}

impl Loss for SupCon {
    fn loss(&self, embeddings: &Tensor, labels: &Tensor) -> Result<Tensor> {
        const OP: &str = "SupCon";
        let x = pairs::embeddings(OP, "embeddings", embeddings)?;
        let labels = pairs::labels(OP, labels, &x)?;
        let (pos, _) = pairs::label_masks(&labels);
        let z = pairs::normalize(&x);
        let s = z.matmul(&z.tr()) / self.config.temperature;
        let n = x.size()[0];
        let eye = Tensor::eye(n, (Kind::Bool, x.device()));
        let log_denominator = s
            .where_self(
                &eye.logical_not(),
                &Tensor::full_like(&s, f64::NEG_INFINITY),
            )
            .logsumexp([1], true);
        let log_prob = (&s - log_denominator).where_self(&pos, &Tensor::zeros_like(&s));
        let counts = pos.sum_dim_intlist(1, false, Kind::Int64);
        let anchors = counts.gt(0);
        if !bool::try_from(anchors.any())? {
            return Err(Error::NoPositives { op: OP });
        }
        let per_anchor = log_prob.sum_dim_intlist(1, false, None::<Kind>).neg()
            / counts.clamp_min(1).to_kind(s.kind());
        Ok(per_anchor.masked_select(&anchors).mean(None::<Kind>))
    }
}
