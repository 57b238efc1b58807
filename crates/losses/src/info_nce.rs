//! InfoNCE / NT-Xent (van den Oord et al., 2018; Chen et al., SimCLR, 2020) with any number
//! of positives per anchor, the decoupled variant (Yeh et al., DCL, 2022), and a chunked
//! computation for large batches.

use contrastive_tensor::{Device, Kind, Tensor, no_grad};
use serde::{Deserialize, Serialize};

use crate::pairs::{self, check_temperature};
use crate::{Error, Loss, Result};

/// Settings of [`InfoNce`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfoNceConfig {
    /// Softmax temperature `tau` (> 0); SimCLR uses 0.5 on small images, 0.1 on ImageNet.
    pub temperature: f64,
    /// Leave the positive out of the denominator (DCL).
    #[serde(default)]
    pub decoupled: bool,
    /// Compute in blocks of this many anchors, never holding the whole `[N, N]` similarity
    /// matrix: the same loss and gradients at a fraction of the memory. `None`: in one block,
    /// except for two views ([`InfoNce::views`]), whose blocks are then a quarter of the rows
    /// (64 to 1024), the fastest we measured.
    #[serde(default)]
    pub chunk_size: Option<usize>,
}

impl InfoNceConfig {
    /// The plain (coupled) loss in one block.
    pub fn new(temperature: f64) -> Self {
        Self {
            temperature,
            decoupled: false,
            chunk_size: None,
        }
    }

    /// Uses the decoupled (DCL) denominator.
    pub fn with_decoupled(self, decoupled: bool) -> Self {
        Self { decoupled, ..self }
    }

    /// Computes in blocks of `chunk_size` anchors.
    pub fn with_chunk_size(self, chunk_size: Option<usize>) -> Self {
        Self { chunk_size, ..self }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        check_temperature(self.temperature)?;
        if self.chunk_size == Some(0) {
            return Err(crate::error::invalid("chunk_size", "must be at least 1"));
        }
        Ok(())
    }
}

/// InfoNCE over cosine similarities `s = <z_a, z_b> / tau` of L2-normalised embeddings.
///
/// Each positive pair `(a, p)` is one term, `-s_ap + log(exp(s_ap) + sum_n exp(s_an))` over
/// the anchor's negatives `n` (decoupled: without the `exp(s_ap)`), and the loss is the mean
/// over all positive pairs, in both directions. With one positive per anchor this is SimCLR's
/// NT-Xent; with labels it equals pytorch-metric-learning's `NTXentLoss`.
#[derive(Debug, Clone)]
pub struct InfoNce {
    config: InfoNceConfig,
}

const OP: &str = "InfoNCE";

impl InfoNce {
    /// Builds the loss; the config is validated.
    pub fn new(config: InfoNceConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    /// NT-Xent for two views: `z1[i]` and `z2[i]` are views of image `i`, every other view in
    /// the batch is a negative.
    ///
    /// This is the common case, so it has its own path: one positive per row, found by index
    /// rather than by mask; the loss and its gradient with respect to the normalised
    /// embeddings are computed directly (the softmax of each similarity row minus one at the
    /// positive), in blocks of rows (`chunk_size`, or a quarter of the rows), and joined to
    /// the graph through `z * grad`. This is faster than autograd through the dense form at
    /// every batch size we measured (W3) and holds one block of similarities at a time.
    pub fn views(&self, z1: &Tensor, z2: &Tensor) -> Result<Tensor> {
        let z = pairs::same_shapes(OP, &[("z1", z1), ("z2", z2)])?;
        let x = Tensor::cat(&z, 0);
        let rows = x.size()[0];
        let n = rows / 2;
        // Row i's positive is its other view.
        let partner = (Tensor::arange(rows, (Kind::Int64, x.device())) + n).remainder(rows);
        let z = pairs::normalize(&x);
        let block = self
            .config
            .chunk_size
            .map_or((rows / 4).clamp(64, 1024), |c| c as i64);
        let (grad, total) = no_grad(|| {
            let zd = z.detach();
            let mut grad = Tensor::zeros_like(&zd);
            let mut total = Tensor::zeros([], (zd.kind(), zd.device()));
            let mut r0 = 0;
            while r0 < rows {
                let r1 = (r0 + block).min(rows);
                let block = zd.narrow(0, r0, r1 - r0);
                let s = block.matmul(&zd.tr()) / self.config.temperature;
                let block_partner = partner.narrow(0, r0, r1 - r0).unsqueeze(1);
                let (per_row, masked, lse) =
                    self.view_rows(&s, r0, &partner.narrow(0, r0, r1 - r0));
                total += per_row.sum(None::<Kind>);
                // d/ds: softmax over the denominator's columns, minus one at the positive.
                let minus_one = Tensor::full([r1 - r0, 1], -1.0, (s.kind(), s.device()));
                let d_s = (masked - lse)
                    .exp()
                    .scatter_add(1, &block_partner, &minus_one)
                    / rows as f64;
                let _ = grad
                    .narrow(0, r0, r1 - r0)
                    .g_add_(&(d_s.matmul(&zd) / self.config.temperature));
                let _ = grad.g_add_(&(d_s.tr().matmul(&block) / self.config.temperature));
                r0 = r1;
            }
            (grad, total / rows as f64)
        });
        let surrogate = (&z * &grad).sum(None::<Kind>);
        Ok(&surrogate - surrogate.detach() + total)
    }

    /// For similarity rows `s` (`[c, 2N]`, anchors `r0..r0 + c`) and each row's positive
    /// column: the per-row loss `[c]`, the rows with the excluded columns at -inf, and their
    /// log-sum-exp `[c, 1]`.
    fn view_rows(&self, s: &Tensor, r0: i64, partner: &Tensor) -> (Tensor, Tensor, Tensor) {
        let c = s.size()[0];
        let own = Tensor::arange_start(r0, r0 + c, (Kind::Int64, s.device())).unsqueeze(1);
        let partner = partner.unsqueeze(1);
        let mut masked = s.scatter_value(1, &own, f64::NEG_INFINITY);
        let positive = s.gather(1, &partner, false).squeeze_dim(1);
        if self.config.decoupled {
            masked = masked.scatter_value(1, &partner, f64::NEG_INFINITY);
        }
        let lse = masked.logsumexp([1], true);
        (lse.squeeze_dim(1) - positive, masked, lse)
    }

    /// The loss with explicit `[N, N]` boolean masks: `positive[a][b]` makes `(a, b)` a
    /// positive pair, `negative[a][b]` puts `b` in `a`'s denominator (pairs in neither are
    /// ignored, as frames of one video that are neither near nor far).
    pub fn masked(
        &self,
        embeddings: &Tensor,
        positive: &Tensor,
        negative: &Tensor,
    ) -> Result<Tensor> {
        let x = pairs::embeddings(OP, "embeddings", embeddings)?;
        let n = x.size()[0];
        for (what, mask) in [("positive", positive), ("negative", negative)] {
            if mask.size() != [n, n] {
                return Err(Error::Shape {
                    op: OP,
                    message: format!("{what} mask must be [{n}, {n}], got {:?}", mask.size()),
                });
            }
        }
        let device = x.device();
        let (positive, negative) = (
            positive.to_device(device).to_kind(Kind::Bool),
            negative.to_device(device).to_kind(Kind::Bool),
        );
        self.compute(&x, &|rows: (i64, i64)| {
            (
                positive.narrow(0, rows.0, rows.1 - rows.0),
                negative.narrow(0, rows.0, rows.1 - rows.0),
            )
        })
    }

    /// Dense or chunked, by the config; `masks(rows)` gives the positive and negative masks
    /// of anchors `rows.0..rows.1`.
    fn compute(
        &self,
        x: &Tensor,
        masks: &dyn Fn((i64, i64)) -> (Tensor, Tensor),
    ) -> Result<Tensor> {
        let n = x.size()[0];
        let positives = (0..n)
            .step_by(self.block(n) as usize)
            .map(|r0| {
                masks((r0, (r0 + self.block(n)).min(n)))
                    .0
                    .sum(Kind::Int64)
                    .int64_value(&[])
            })
            .sum::<i64>();
        if positives == 0 {
            return Err(Error::NoPositives { op: OP });
        }
        if self.block(n) >= n {
            let (pos, neg) = masks((0, n));
            let z = pairs::normalize(x);
            let s = z.matmul(&z.tr()) / self.config.temperature;
            let (per_pair, _) = self.terms(&s, &neg);
            return Ok(per_pair.masked_select(&pos).mean(None::<Kind>));
        }
        self.chunked(x, positives, masks)
    }

    fn block(&self, n: i64) -> i64 {
        self.config.chunk_size.map_or(n, |c| c as i64)
    }

    /// Per-pair terms `[c, N]` for similarity rows `s`, and each row's log-sum-exp over its
    /// negatives `[c, 1]`.
    fn terms(&self, s: &Tensor, negative: &Tensor) -> (Tensor, Tensor) {
        let masked = s.where_self(negative, &Tensor::full_like(s, f64::NEG_INFINITY));
        let neg_lse = masked.logsumexp([1], true);
        let per_pair = if self.config.decoupled {
            &neg_lse - s
        } else {
            s.logaddexp(&neg_lse) - s
        };
        (per_pair, neg_lse)
    }

    /// The same value and gradient as the dense computation, block by block: the loss and
    /// its gradient with respect to the normalised embeddings are computed without autograd,
    /// then joined to the graph through `z * grad` (whose gradient is `grad`).
    fn chunked(
        &self,
        x: &Tensor,
        positives: i64,
        masks: &dyn Fn((i64, i64)) -> (Tensor, Tensor),
    ) -> Result<Tensor> {
        let n = x.size()[0];
        let tau = self.config.temperature;
        let z = pairs::normalize(x);
        let zd = z.detach();
        let (grad, total) = no_grad(|| {
            let mut grad = Tensor::zeros_like(&zd);
            let mut total = Tensor::zeros([], (zd.kind(), zd.device()));
            let mut r0 = 0;
            while r0 < n {
                let r1 = (r0 + self.block(n)).min(n);
                let (pos, neg) = masks((r0, r1));
                let rows = zd.narrow(0, r0, r1 - r0);
                let s = rows.matmul(&zd.tr()) / tau;
                let (per_pair, neg_lse) = self.terms(&s, &neg);
                total += per_pair
                    .where_self(&pos, &Tensor::zeros_like(&s))
                    .sum(None::<Kind>);
                let posf = pos.to_kind(s.kind());
                // d(term)/ds for every (anchor, column) of the block.
                let d_s = if self.config.decoupled {
                    let n_pos = posf.sum_dim_intlist(1, true, None::<Kind>);
                    (&s - &neg_lse).exp() * n_pos * neg.to_kind(s.kind()) - &posf
                } else {
                    let den = s.logaddexp(&neg_lse); // per positive column
                    let on_pos = ((&s - &den).exp() - 1.0) * &posf;
                    // sum over the row's positives of exp(neg_lse - den_ap), all <= 1.
                    let weight =
                        ((&neg_lse - &den).exp() * &posf).sum_dim_intlist(1, true, None::<Kind>);
                    on_pos + (&s - &neg_lse).exp() * weight * neg.to_kind(s.kind())
                } / positives as f64;
                let _ = grad.narrow(0, r0, r1 - r0).g_add_(&(d_s.matmul(&zd) / tau));
                let _ = grad.g_add_(&(d_s.tr().matmul(&rows) / tau));
                r0 = r1;
            }
            (grad, total / positives as f64)
        });
        let surrogate = (&z * &grad).sum(None::<Kind>);
        Ok(&surrogate - surrogate.detach() + total)
    }
}

impl Loss for InfoNce {
    /// Positive pairs share a label; every pair with different labels is a negative.
    fn loss(&self, embeddings: &Tensor, labels: &Tensor) -> Result<Tensor> {
        let x = pairs::embeddings(OP, "embeddings", embeddings)?;
        let labels = pairs::labels(OP, labels, &x)?;
        let device: Device = x.device();
        let n = x.size()[0];
        self.compute(&x, &|(r0, r1)| {
            let rows = labels.narrow(0, r0, r1 - r0).unsqueeze(1);
            let same = rows.eq_tensor(&labels.unsqueeze(0));
            let index = Tensor::arange_start(r0, r1, (Kind::Int64, device)).unsqueeze(1);
            let own = index.eq_tensor(&Tensor::arange(n, (Kind::Int64, device)).unsqueeze(0));
            (same.logical_and(&own.logical_not()), same.logical_not())
        })
    }
}
