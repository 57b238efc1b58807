//! Backbones and heads: torchvision's parameter names and shapes, output widths, and
//! checkpoints that round-trip.

use std::collections::BTreeMap;

use contrastive_models::{ProjectionHead, ResNet, ResNetDepth, SmallCnn, Stem};
use contrastive_tensor::{
    Device, Encoder, Kind, ModuleT, Precision, Tensor, autocast, load_var_store, nn, no_grad,
    save_var_store, seed_all,
};
use serde_json::Value;

fn shapes(vs: &nn::VarStore) -> BTreeMap<String, Vec<i64>> {
    vs.variables()
        .into_iter()
        .map(|(k, v)| (k, v.size()))
        .collect()
}

#[test]
fn resnets_have_torchvisions_names_and_shapes() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/torchvision_resnets.json"
    ))
    .unwrap();
    let reference: Value = serde_json::from_str(&text).unwrap();
    for (name, depth, width) in [
        ("resnet18", ResNetDepth::R18, 512),
        ("resnet34", ResNetDepth::R34, 512),
        ("resnet50", ResNetDepth::R50, 2048),
    ] {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = ResNet::new(&vs.root(), depth, 3, Stem::ImageNet);
        assert_eq!(net.out_dim(), width);
        let expected: BTreeMap<String, Vec<i64>> = reference[name]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_array()
                        .unwrap()
                        .iter()
                        .map(|d| d.as_i64().unwrap())
                        .collect(),
                )
            })
            .collect();
        assert_eq!(shapes(&vs), expected, "{name}");
    }
}

#[test]
fn stems_and_channels_change_only_the_first_convolution() {
    let vs = nn::VarStore::new(Device::Cpu);
    let cifar = ResNet::new(&vs.root(), ResNetDepth::R18, 1, Stem::Cifar);
    assert_eq!(vs.variables()["conv1.weight"].size(), [64, 1, 3, 3]);
    let x = Tensor::rand([2, 1, 32, 32], (Kind::Float, Device::Cpu));
    assert_eq!(cifar.forward_t(&x, true).size(), [2, 512]);

    let vs = nn::VarStore::new(Device::Cpu);
    let imagenet = ResNet::new(&vs.root(), ResNetDepth::R50, 3, Stem::ImageNet);
    let x = Tensor::rand([1, 3, 64, 64], (Kind::Float, Device::Cpu));
    assert_eq!(no_grad(|| imagenet.forward_t(&x, false)).size(), [1, 2048]);
}

#[test]
fn the_w1_small_cnn_has_287k_parameters() {
    let vs = nn::VarStore::new(Device::Cpu);
    let net = SmallCnn::new(&vs.root(), 1);
    let trainable: i64 = vs
        .trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum();
    // Six convolutions without bias and their batch-norm scales and shifts.
    let convs: i64 = [(1, 32), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128)]
        .iter()
        .map(|(i, o)| i * o * 9)
        .sum();
    assert_eq!(trainable, convs + 2 * (32 + 32 + 64 + 64 + 128 + 128));
    assert_eq!(trainable, 286_880);
    let x = Tensor::rand([4, 1, 28, 28], (Kind::Float, Device::Cpu));
    assert_eq!(net.forward_t(&x, true).size(), [4, 128]);
    assert_eq!(net.out_dim(), 128);
}

#[test]
fn heads_are_named_as_lightly_names_them() {
    let vs = nn::VarStore::new(Device::Cpu);
    let simclr = ProjectionHead::simclr(&(vs.root() / "head"), 128, 256, 128);
    let names = shapes(&vs);
    assert_eq!(names["head.layers.0.weight"], [256, 128]);
    assert!(
        !names.contains_key("head.layers.0.bias"),
        "a linear layer before batch-norm has no bias"
    );
    assert_eq!(names["head.layers.1.running_var"], [256]);
    assert_eq!(names["head.layers.3.weight"], [128, 256]);
    assert_eq!(names["head.layers.3.bias"], [128]);
    assert_eq!(
        simclr
            .forward_t(&Tensor::rand([8, 128], (Kind::Float, Device::Cpu)), true)
            .size(),
        [8, 128]
    );

    let vs = nn::VarStore::new(Device::Cpu);
    let moco = ProjectionHead::moco_v2(&vs.root(), 512, 512, 128);
    let names = shapes(&vs);
    assert_eq!(
        (
            names["layers.0.bias"].clone(),
            names["layers.2.weight"].clone()
        ),
        (vec![512], vec![128, 512])
    );
    assert_eq!(moco.out_dim(), 128);
}

#[test]
fn a_model_reloads_exactly_and_runs_in_bf16() {
    seed_all(1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resnet18.safetensors");
    let build = || {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = ResNet::new(&(vs.root() / "backbone"), ResNetDepth::R18, 3, Stem::Cifar);
        (vs, net)
    };
    let (vs, net) = build();
    let x = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
    let _ = net.forward_t(&x, true); // moves the batch-norm statistics
    save_var_store(&vs, &path, &BTreeMap::new()).unwrap();
    let (fresh_vs, fresh) = build();
    load_var_store(&fresh_vs, &path).unwrap();
    let (a, b) = no_grad(|| (net.forward_t(&x, false), fresh.forward_t(&x, false)));
    assert!(a.equal(&b));
    let bf16 = {
        let _guard = autocast(Device::Cpu, Precision::Bf16).unwrap();
        no_grad(|| net.forward_t(&x, false))
    };
    let err =
        (bf16.to_kind(Kind::Float) - &a).norm().double_value(&[]) / a.norm().double_value(&[]);
    assert!(err < 0.05, "bf16 relative error {err}");
}
