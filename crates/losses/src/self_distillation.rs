//! The non-contrastive losses: no negatives, only two views' embeddings of the same images
//! pulled together, with what keeps them from collapsing to one point — a predictor and a
//! stop-gradient (BYOL, SimSiam), decorrelated features (Barlow Twins), or variance and
//! covariance terms (VICReg). Each is written as lightly writes it
//! (`lightly.loss.NegativeCosineSimilarity`, `BarlowTwinsLoss`, `VICRegLoss`), and checked
//! against lightly's own values in `tests/self_distillation.rs`.

use contrastive_tensor::Tensor;

use crate::error::invalid;
use crate::pairs::same_shapes;
use crate::{Error, Result};

/// The mean negative cosine similarity of `predictions` `[N, D]` and `targets` `[N, D]`,
/// row by row; no gradient flows into `targets` (BYOL's and SimSiam's stop-gradient).
/// lightly's `NegativeCosineSimilarity` (eps 1e-8), on detached targets.
pub fn negative_cosine(predictions: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let pt = same_shapes(
        "negative cosine",
        &[("predictions", predictions), ("targets", targets)],
    )?;
    let cosine = Tensor::cosine_similarity(&pt[0], &pt[1].detach(), 1, 1e-8);
    Ok(-cosine.mean(cosine.kind()))
}

/// Barlow Twins (Zbontar et al., 2021): each embedding dimension normalised over the batch,
/// their cross-correlation between the views pushed towards the identity: `sum_i (1 -
/// c_ii)^2 + lambda * sum_{i != j} c_ij^2`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BarlowTwins {
    lambda: f64,
}

impl BarlowTwins {
    /// With `lambda` the weight of the off-diagonal terms (the paper's 5e-3); finite and
    /// not negative.
    pub fn new(lambda: f64) -> Result<Self> {
        if !(lambda.is_finite() && lambda >= 0.0) {
            return Err(invalid(
                "lambda",
                format!("must be finite and >= 0, got {lambda}"),
            ));
        }
        Ok(Self { lambda })
    }

    /// The loss of the two views' embeddings `a` and `b`, `[N, D]` each, N >= 2.
    pub fn loss(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let ab = two_batches("Barlow Twins", a, b)?;
        let n = ab[0].size()[0] as f64;
        let c = standardise(&ab[0]).tr().matmul(&standardise(&ab[1])) / n;
        let diagonal = c.diagonal(0, 0, 1);
        let invariance = (diagonal.ones_like() - &diagonal).square().sum(c.kind());
        let off = c.square().sum(c.kind()) - diagonal.square().sum(c.kind());
        Ok(invariance + off * self.lambda)
    }
}

/// VICReg (Bardes et al., 2022): `lambda * invariance + mu * variance + nu * covariance`,
/// where invariance is the mean squared difference of the views' embeddings, variance the
/// mean hinge `relu(1 - std)` of each dimension (averaged over the views), and covariance
/// the sum over the views of the squared off-diagonal covariances divided by the width.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VicReg {
    lambda: f64,
    mu: f64,
    nu: f64,
    eps: f64,
}

impl VicReg {
    /// With the weights of the invariance, variance and covariance terms (the paper's 25,
    /// 25 and 1), finite and not negative; the variance's `eps` is 1e-4, as lightly's.
    pub fn new(lambda: f64, mu: f64, nu: f64) -> Result<Self> {
        for (name, value) in [("lambda", lambda), ("mu", mu), ("nu", nu)] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(invalid(
                    name,
                    format!("must be finite and >= 0, got {value}"),
                ));
            }
        }
        Ok(Self {
            lambda,
            mu,
            nu,
            eps: 1e-4,
        })
    }

    /// The loss of the two views' embeddings `a` and `b`, `[N, D]` each, N >= 2.
    pub fn loss(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let ab = two_batches("VICReg", a, b)?;
        let (a, b) = (&ab[0], &ab[1]);
        let invariance = (a - b).square().mean(a.kind());
        let variance = (self.variance(a) + self.variance(b)) * 0.5;
        let covariance = covariance(a) + covariance(b);
        Ok(invariance * self.lambda + variance * self.mu + covariance * self.nu)
    }

    fn variance(&self, x: &Tensor) -> Tensor {
        let std = (x.var_dim(Some(&[0i64][..]), true, false) + self.eps).sqrt();
        (std.ones_like() - &std).relu().mean(x.kind())
    }
}

/// Squared off-diagonal entries of `x`'s covariance (`[D, D]`, unbiased), summed, over D.
fn covariance(x: &Tensor) -> Tensor {
    let (n, dim) = (x.size()[0], x.size()[1]);
    let centred = x - x.mean_dim(Some(&[0i64][..]), true, x.kind());
    let cov = centred.tr().matmul(&centred) / (n - 1) as f64;
    let off = cov.square().sum(x.kind()) - cov.diagonal(0, 0, 1).square().sum(x.kind());
    off / dim as f64
}

/// Each column of `x` at mean 0 and variance 1 over the rows (biased variance, eps 1e-5:
/// `torch.nn.functional.batch_norm` in training mode, as lightly normalises).
fn standardise(x: &Tensor) -> Tensor {
    let mean = x.mean_dim(Some(&[0i64][..]), true, x.kind());
    let var = x.var_dim(Some(&[0i64][..]), false, true);
    (x - mean) / (var + 1e-5).sqrt()
}

/// `a` and `b` checked as two `[N, D]` batches of one shape with N >= 2 (statistics over the
/// batch need two rows).
fn two_batches(op: &'static str, a: &Tensor, b: &Tensor) -> Result<Vec<Tensor>> {
    let ab = same_shapes(op, &[("a", a), ("b", b)])?;
    if ab[0].size()[0] < 2 {
        return Err(Error::Shape {
            op,
            message: format!("needs a batch of at least 2, got {:?}", ab[0].size()),
        });
    }
    Ok(ab)
}
