//! Batch-norm that can take its statistics from the global batch of a data-parallel run.
//!
//! Outside [`ProcessGroup::synchronising`](contrastive_tensor::dist::ProcessGroup::synchronising)
//! (and in evaluation) it is libtorch's batch-norm. Inside one, in training mode, each
//! layer sums its per-channel sums, sums of squares and counts over every rank (a sum that
//! keeps gradients), normalises by the global mean and variance, and updates its running
//! statistics with them, as `torch.nn.SyncBatchNorm` does (in two sums, in `f32`: the mean,
//! then the squared deviations from it).

use contrastive_tensor::dist::synced_sum;
use contrastive_tensor::{Kind, ModuleT, Tensor, nn, no_grad};

/// libtorch's defaults, which every layer here uses.
const EPS: f64 = 1e-5;
const MOMENTUM: f64 = 0.1;

/// A batch-norm layer (its variables named as libtorch's: `weight`, `bias`,
/// `running_mean`, `running_var`).
#[derive(Debug)]
pub(crate) struct BatchNorm(nn::BatchNorm);

/// A batch-norm layer over `[N, C]` or `[N, C, L]` inputs.
pub(crate) fn batch_norm1d(p: nn::Path, channels: i64) -> BatchNorm {
    BatchNorm(nn::batch_norm1d(p, channels, Default::default()))
}

/// A batch-norm layer over `[N, C, H, W]` inputs.
pub(crate) fn batch_norm2d(p: nn::Path, channels: i64) -> BatchNorm {
    BatchNorm(nn::batch_norm2d(p, channels, Default::default()))
}

impl ModuleT for BatchNorm {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        if train && let Some(normalised) = self.synchronised(xs) {
            return normalised;
        }
        xs.apply_t(&self.0, train)
    }
}

impl BatchNorm {
    /// `xs` normalised by the statistics of every rank's batch, or `None` outside a
    /// synchronising group.
    fn synchronised(&self, xs: &Tensor) -> Option<Tensor> {
        let channels = xs.size()[1];
        let dims: Vec<i64> = (0..xs.dim() as i64).filter(|&d| d != 1).collect();
        let mut shape = vec![1; xs.dim()];
        shape[1] = channels;
        let x = xs.to_kind(Kind::Float);
        // Two sums, so that f32 keeps the variance exact where E[x^2] - E[x]^2 would not:
        // the global mean first, then the global squared deviations from it.
        let count = Tensor::full(
            [1],
            (xs.numel() as i64 / channels) as f64,
            (Kind::Float, xs.device()),
        );
        let sums = Tensor::cat(
            &[x.sum_dim_intlist(&dims[..], false, Kind::Float), count],
            0,
        );
        let sums = synced_sum(&sums)?;
        let n = sums.narrow(0, channels, 1);
        let mean = sums.narrow(0, 0, channels) / &n;
        let centred = x - mean.view(&shape[..]);
        let squares = centred
            .square()
            .sum_dim_intlist(&dims[..], false, Kind::Float);
        let var = synced_sum(&squares)? / &n;
        let mut y = centred / (&var + EPS).sqrt().view(&shape[..]);
        if let (Some(w), Some(b)) = (&self.0.ws, &self.0.bs) {
            y = y * w.view(&shape[..]) + b.view(&shape[..]);
        }
        let n = n.double_value(&[0]);
        no_grad(|| {
            let unbiased = var.detach() * (n / (n - 1.0).max(1.0));
            let (running_mean, running_var) = (&self.0.running_mean, &self.0.running_var);
            running_mean
                .shallow_clone()
                .copy_(&(running_mean * (1.0 - MOMENTUM) + mean.detach() * MOMENTUM));
            running_var
                .shallow_clone()
                .copy_(&(running_var * (1.0 - MOMENTUM) + unbiased * MOMENTUM));
        });
        Some(y.to_kind(xs.kind()))
    }
}
