//! End to end over the foundation: a small conv net learns a real (if easy) task on the CPU in
//! bf16 autocast and channels-last, is checkpointed, and comes back giving the same answers.

use std::collections::BTreeMap;

use contrastive_e2e::tiny_cnn;
use contrastive_tensor::{
    Device, Kind, ModuleT, Precision, Tensor, autocast, load_var_store, nn, nn::OptimizerConfig,
    no_grad, save_var_store, seed_all, set_threads, stack_hwc, to_channels_last,
    var_store_to_channels_last,
};
use ndarray::Array3;

/// 28x28 gray images of a bright bar, horizontal (label 0) or vertical (label 1), at a random
/// position over noise.
fn bars(n: usize, seed: u64) -> (Tensor, Tensor) {
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as u32
    };
    let mut images = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let vertical = i % 2 == 1;
        let at = 4 + (next() % 20) as usize;
        let image = Array3::from_shape_fn((28, 28, 1), |(y, x, _)| {
            let on_bar = if vertical {
                x.abs_diff(at) <= 1
            } else {
                y.abs_diff(at) <= 1
            };
            if on_bar { 200 } else { (next() % 60) as u8 }
        });
        images.push(image);
        labels.push(i64::from(vertical));
    }
    let views: Vec<_> = images.iter().map(|i| i.view()).collect();
    (stack_hwc(&views).unwrap(), Tensor::from_slice(&labels))
}

fn accuracy(net: &nn::SequentialT, images: &Tensor, labels: &Tensor) -> f64 {
    let logits = no_grad(|| net.forward_t(images, false));
    logits
        .argmax(-1, false)
        .eq_tensor(labels)
        .to_kind(Kind::Float)
        .mean(Kind::Float)
        .double_value(&[])
}

#[test]
fn a_small_cnn_trains_in_bf16_channels_last_and_reloads_exactly() {
    set_threads(2).unwrap();
    seed_all(11);
    let (train_x, train_y) = bars(512, 1);
    let (test_x, test_y) = bars(256, 2);
    let train_x = to_channels_last(&train_x).unwrap();

    let vs = nn::VarStore::new(Device::Cpu);
    let net = tiny_cnn(&vs, 2);
    var_store_to_channels_last(&vs).unwrap();
    let mut opt = nn::Sgd {
        momentum: 0.9,
        ..Default::default()
    }
    .build(&vs, 0.05)
    .unwrap();
    let chance = accuracy(&net, &test_x, &test_y);

    let mut first_loss = None;
    let mut last_loss = 0.0;
    for epoch in 0..4 {
        for (xs, ys) in Tensor::split(&train_x, 64, 0)
            .iter()
            .zip(Tensor::split(&train_y, 64, 0))
        {
            let loss = {
                let _bf16 = autocast(Device::Cpu, Precision::Bf16).unwrap();
                net.forward_t(xs, true).cross_entropy_for_logits(&ys)
            };
            assert_eq!(loss.kind(), Kind::Float, "autocast keeps losses in fp32");
            opt.backward_step(&loss);
            last_loss = loss.double_value(&[]);
            first_loss.get_or_insert(last_loss);
        }
        assert!(last_loss.is_finite(), "epoch {epoch}: loss {last_loss}");
    }
    let trained = accuracy(&net, &test_x, &test_y);
    assert!(
        last_loss < first_loss.unwrap() * 0.5,
        "loss {first_loss:?} -> {last_loss}"
    );
    assert!(
        trained > 0.9,
        "test accuracy {trained} (untrained: {chance})"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bars.safetensors");
    let metadata = BTreeMap::from([("task".to_string(), "bars".to_string())]);
    save_var_store(&vs, &path, &metadata).unwrap();

    let fresh = nn::VarStore::new(Device::Cpu);
    let reloaded = tiny_cnn(&fresh, 2);
    load_var_store(&fresh, &path).unwrap();
    let expected = no_grad(|| net.forward_t(&test_x, false));
    let got = no_grad(|| reloaded.forward_t(&test_x, false));
    assert!(
        got.allclose(&expected, 1e-5, 1e-6, false),
        "reloaded model answers differently"
    );
    assert_eq!(accuracy(&reloaded, &test_x, &test_y), trained);
}
