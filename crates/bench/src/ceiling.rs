//! The hardware ceiling: FLOP/s of a large square matrix product in fp32 and bf16 on
//! libtorch's threads, the most the compute-bound kernels can reach on this machine.

use contrastive_tensor::{Device, Kind, Tensor, seed_all};

use crate::{Row, Scale, median_ms};

/// Floating-point operations of one forward + backward pass of the W1 small CNN and head
/// for one 28 x 28 view: twice the multiply-adds of the forward pass, times three
/// (the backward pass computes gradients for inputs and weights, about twice the forward).
pub const W1_FLOP_PER_VIEW: f64 = 3.0 * 2.0 * W1_FORWARD_MACS;

/// Multiply-adds of the W1 forward pass for one view: six 3 x 3 convolutions (1->32 and
/// 32->32 at 28 x 28, 32->64 and 64->64 at 14 x 14, 64->128 and 128->128 at 7 x 7) and the
/// head (128->256->128).
const W1_FORWARD_MACS: f64 = 9.0
    * (28.0 * 28.0 * (32.0 + 32.0 * 32.0)
        + 14.0 * 14.0 * (32.0 * 64.0 + 64.0 * 64.0)
        + 7.0 * 7.0 * (64.0 * 128.0 + 128.0 * 128.0))
    + 128.0 * 256.0
    + 256.0 * 128.0;

/// `matmul_fp32_<n>` and `matmul_bf16_<n>` in GFLOP/s (`n` = 4096, or 256 when small),
/// and `w1_step_flop_per_view` ([`W1_FLOP_PER_VIEW`] in MFLOP) to relate W1's views/s to
/// them.
pub fn rows(scale: Scale, runs: usize) -> Vec<Row> {
    seed_all(0);
    let n = scale.pick(4096, 256);
    let mut flop = Row::rate(
        "ceiling",
        "w1_step_flop_per_view",
        "MFLOP",
        W1_FLOP_PER_VIEW / 1e6,
    );
    flop.note = Some("counted: forward multiply-adds x 2 x 3".into());
    let products = [(Kind::Float, "fp32"), (Kind::BFloat16, "bf16")]
        .into_iter()
        .map(|(kind, label)| {
            let a = Tensor::randn([n, n], (kind, Device::Cpu));
            let b = Tensor::randn([n, n], (kind, Device::Cpu));
            let ms = median_ms(runs, || {
                let _ = a.matmul(&b);
            });
            let gflops = 2.0 * (n as f64).powi(3) / (ms * 1e-3) / 1e9;
            Row::rate("ceiling", &format!("matmul_{label}_{n}"), "GFLOP/s", gflops)
        });
    products.chain(std::iter::once(flop)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_is_measured_and_the_w1_count_is_plausible() {
        let rows = rows(Scale::Small, 1);
        assert_eq!(rows.len(), 3);
        assert!(rows.iter().all(|r| r.value > 0.1), "{rows:?}");
        // About 29 M multiply-adds forward: 0.175 GFLOP per view forward + backward.
        assert!(
            (1.7e8..1.8e8).contains(&W1_FLOP_PER_VIEW),
            "{W1_FLOP_PER_VIEW}"
        );
    }
}
