//! Alignment and uniformity on the hypersphere (Wang and Isola, "Understanding Contrastive
//! Representation Learning through Alignment and Uniformity on the Hypersphere", ICML
//! 2020): the two views of an image pulled together (alignment), every batch's embeddings
//! spread over the sphere (uniformity), with no softmax over negatives. Written as lightly
//! writes it (`lightly.loss.HypersphereLoss`) and checked against lightly's own values in
//! `tests/self_distillation.rs`.

use contrastive_tensor::{Kind, Tensor};

use crate::error::invalid;
use crate::pairs::{check_margin, check_temperature, normalize, same_shapes};
use crate::{Error, Result};

/// `align(x, y) + lam * (uniform(x) + uniform(y)) / 2` of the L2-normalised views `x` and
/// `y`: `align` is the mean of `||x_i - y_i||^alpha`, `uniform` the log of the mean over
/// the batch's pairs `i < j` of `exp(-t ||x_i - x_j||^2)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hypersphere {
    t: f64,
    lam: f64,
    alpha: f64,
}

impl Hypersphere {
    /// With the uniformity's temperature `t` (the paper's 2; lightly's default 1), the
    /// weight `lam` of the uniformity terms (1) and the power `alpha` of the alignment's
    /// distances (2): `t` and `alpha` finite and above 0, `lam` finite and not negative.
    pub fn new(t: f64, lam: f64, alpha: f64) -> Result<Self> {
        check_temperature(t)?;
        check_margin("lam", lam)?;
        if !(alpha.is_finite() && alpha > 0.0) {
            return Err(invalid("alpha", format!("must be > 0, got {alpha}")));
        }
        Ok(Self { t, lam, alpha })
    }

    /// The loss of the two views' embeddings `a` and `b`, `[N, D]` each, N >= 2.
    pub fn loss(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let ab = same_shapes("hypersphere", &[("a", a), ("b", b)])?;
        if ab[0].size()[0] < 2 {
            return Err(Error::Shape {
                op: "hypersphere",
                message: format!("needs a batch of at least 2, got {:?}", ab[0].size()),
            });
        }
        let (x, y) = (normalize(&ab[0]), normalize(&ab[1]));
        let align = (&x - &y)
            .norm_scalaropt_dim(2, [1], false)
            .pow_tensor_scalar(self.alpha)
            .mean(x.kind());
        Ok(align + (self.uniformity(&x) + self.uniformity(&y)) * (self.lam / 2.0))
    }

    /// `log mean_{i < j} exp(-t ||x_i - x_j||^2)` of unit rows `x` `[N, D]`, as a
    /// log-sum-exp (finite where every pair's kernel underflows, as with a large `t`).
    fn uniformity(&self, x: &Tensor) -> Tensor {
        let n = x.size()[0];
        // Unit rows: ||x_i - x_j||^2 = 2 - 2 x_i . x_j, smooth where two rows meet (unlike
        // the distance's own gradient at 0).
        let squared = (x.matmul(&x.tr()) * -2.0 + 2.0).clamp_min(0.0);
        let pairs = Tensor::ones([n, n], (Kind::Bool, x.device())).triu(1);
        let count = (n * (n - 1) / 2) as f64;
        (squared.masked_select(&pairs) * -self.t).logsumexp([0], false) - count.ln()
    }
}
