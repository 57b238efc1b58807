//! The memory a training step needs, measured from trial steps of the model (alone in this
//! test process, so no other test's allocations skew the process's peak).

use contrastive_models::{Backbone, HeadKind, ModelConfig, Stem};
use contrastive_tensor::{Device, Precision};
use contrastive_trainer::measure_step_memory;

#[test]
fn larger_views_measure_more_memory_per_view() {
    let config = ModelConfig {
        backbone: Backbone::SmallCnn,
        in_channels: 3,
        stem: Stem::Cifar,
        head: HeadKind::Simclr,
        head_hidden: 64,
        head_out: 32,
    };
    let per_view = |side: i64| {
        measure_step_memory(config, side, Device::Cpu, Precision::Fp32, false, 100, None)
            .unwrap()
            .expect("Linux has /proc")
    };
    let (small, large) = (per_view(32), per_view(96));
    // Activations grow with the pixels (9x here); the inputs alone are 12 KiB and 108 KiB.
    assert!(
        large.per_view > 3.0 * small.per_view,
        "32 px: {small:?}, 96 px: {large:?}"
    );
    assert!(small.per_view > (3 * 32 * 32 * 4) as f64, "{small:?}");
    assert!(small.available > 0 && small.views == 100);
}
