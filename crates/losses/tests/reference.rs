//! Every loss against the PyTorch reference in `fixtures/reference.json` (made by
//! `fixtures/make_fixtures.py`): loss and gradients within 1e-5 in fp32.

use contrastive_losses::{
    ContrastiveConfig, ContrastiveLoss, Distance, InfoNce, InfoNceConfig, Loss, Mining, MocoConfig,
    MocoQueue, SupCon, SupConConfig, TripletConfig, TripletLoss,
};
use contrastive_tensor::{Device, Kind, Tensor};
use serde_json::Value;

const TOLERANCE: f64 = 1e-5;

fn fixture() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/reference.json"
    ))
    .expect("fixture present");
    serde_json::from_str(&text).unwrap()
}

fn fixture_labels(fx: &Value) -> Tensor {
    let labels: Vec<i64> = fx["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    Tensor::from_slice(&labels)
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn tensor(v: &Value, rows: i64, d: i64) -> Tensor {
    Tensor::from_slice(&floats(v)).view([rows, d])
}

fn max_abs_diff(a: &Tensor, expected: &[f32]) -> f64 {
    (a.view(-1) - Tensor::from_slice(expected))
        .abs()
        .max()
        .double_value(&[])
}

/// Runs `case` with our implementation: loss and the gradient of each input.
fn ours(case: &Value, fx: &Value) -> (f64, Vec<Tensor>) {
    let (n, d) = (fx["n"].as_i64().unwrap(), fx["d"].as_i64().unwrap());
    let labels = fixture_labels(fx);
    let name = case["name"].as_str().unwrap();
    let p = &case["params"];
    let x = tensor(&fx["embeddings"], n, d).set_requires_grad(true);
    if name == "moco" {
        let q = tensor(&fx["moco_q"], 8, d).set_requires_grad(true);
        let k = tensor(&fx["moco_k"], 8, d).set_requires_grad(true);
        let queue_len = fx["moco_queue_len"].as_i64().unwrap();
        let config = MocoConfig::default()
            .with_queue_size(queue_len as usize)
            .with_temperature(0.2);
        let mut queue = MocoQueue::new(config, d, 8, 1000, Device::Cpu).unwrap();
        queue
            .restore(
                &tensor(&fx["moco_queue"], queue_len, d),
                &Tensor::from(0i64),
            )
            .unwrap();
        let loss = queue.loss(&q, &k).unwrap();
        loss.backward();
        assert!(!k.grad().defined(), "no gradient flows into MoCo keys");
        return (loss.double_value(&[]), vec![q.grad()]);
    }
    let loss = if let Some(kind) = name.strip_prefix("contrastive_") {
        let distance = if kind.starts_with("cosine") {
            Distance::Cosine
        } else {
            Distance::Euclidean
        };
        let config = ContrastiveConfig::new(p["margin"].as_f64().unwrap())
            .with_pos_margin(p["pos_margin"].as_f64().unwrap())
            .with_distance(distance)
            .with_normalize(p["normalize"].as_bool().unwrap());
        ContrastiveLoss::new(config).unwrap().loss(&x, &labels)
    } else if name.starts_with("triplet_") {
        let mining = match p["mining"].as_str().unwrap() {
            "batch_all" => Mining::BatchAll,
            "batch_hard" => Mining::BatchHard,
            _ => Mining::SemiHard,
        };
        let config = TripletConfig::new(p["margin"].as_f64().unwrap())
            .with_mining(mining)
            .with_soft_margin(p["soft"].as_bool().unwrap());
        TripletLoss::new(config).unwrap().loss(&x, &labels)
    } else if name.starts_with("info_nce_") {
        let config = InfoNceConfig::new(p["temperature"].as_f64().unwrap())
            .with_decoupled(p["decoupled"].as_bool().unwrap());
        InfoNce::new(config).unwrap().loss(&x, &labels)
    } else if name == "supcon" {
        SupCon::new(SupConConfig::new(p["temperature"].as_f64().unwrap()))
            .unwrap()
            .loss(&x, &labels)
    } else {
        panic!("no implementation mapped for fixture case {name}")
    }
    .unwrap();
    loss.backward();
    (loss.double_value(&[]), vec![x.grad()])
}

#[test]
fn every_loss_matches_the_pytorch_reference() {
    let fx = fixture();
    let cases = fx["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 17);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (loss, grads) = ours(case, &fx);
        let expected = case["loss"].as_f64().unwrap();
        assert!(
            (loss - expected).abs() < TOLERANCE,
            "{name}: loss {loss} vs PyTorch {expected}"
        );
        for (i, (grad, reference)) in grads
            .iter()
            .zip(case["grads"].as_array().unwrap())
            .enumerate()
        {
            let diff = max_abs_diff(grad, &floats(reference));
            assert!(diff < TOLERANCE, "{name}: gradient {i} differs by {diff}");
        }
    }
}

#[test]
fn chunked_info_nce_gives_the_dense_loss_and_gradients() {
    let fx = fixture();
    let x = tensor(&fx["embeddings"], 16, 8);
    let labels = fixture_labels(&fx);
    for decoupled in [false, true] {
        let run = |chunk: Option<usize>| {
            let x = x.copy().set_requires_grad(true);
            let config = InfoNceConfig::new(0.5)
                .with_decoupled(decoupled)
                .with_chunk_size(chunk);
            let loss = InfoNce::new(config).unwrap().loss(&x, &labels).unwrap();
            loss.backward();
            (loss.double_value(&[]), x.grad())
        };
        let (dense, dense_grad) = run(None);
        for chunk in [1, 3, 5, 16] {
            let (chunked, grad) = run(Some(chunk));
            assert!(
                (chunked - dense).abs() < 1e-6,
                "chunk {chunk}: {chunked} vs {dense}"
            );
            let diff = (grad - &dense_grad).abs().max().double_value(&[]);
            assert!(
                diff < 1e-6,
                "chunk {chunk} (decoupled {decoupled}): gradients differ by {diff}"
            );
        }
    }
    // Explicit masks and two views give the same numbers as labels.
    let z1 = x.narrow(0, 0, 8);
    let z2 = x.narrow(0, 8, 8);
    let loss = InfoNce::new(InfoNceConfig::new(0.5)).unwrap();
    let views = loss.views(&z1, &z2).unwrap().double_value(&[]);
    let ids = Tensor::arange(8, (Kind::Int64, Device::Cpu)).repeat([2]);
    assert!((views - loss.loss(&x, &ids).unwrap().double_value(&[])).abs() < 1e-6);
    let same = ids.unsqueeze(0).eq_tensor(&ids.unsqueeze(1));
    let eye = Tensor::eye(16, (Kind::Bool, Device::Cpu));
    let masked = loss
        .masked(
            &x,
            &same.logical_and(&eye.logical_not()),
            &same.logical_not(),
        )
        .unwrap();
    assert!((views - masked.double_value(&[])).abs() < 1e-6);
}

#[test]
fn chunked_views_give_the_dense_loss_and_gradients() {
    let fx = fixture();
    let x = tensor(&fx["embeddings"], 16, 8);
    let ids = Tensor::arange(8, (Kind::Int64, Device::Cpu)).repeat([2]);
    for decoupled in [false, true] {
        // The general (label) path is the reference for the two-view path.
        let reference = {
            let x = x.copy().set_requires_grad(true);
            let loss = InfoNce::new(InfoNceConfig::new(0.5).with_decoupled(decoupled))
                .unwrap()
                .loss(&x, &ids)
                .unwrap();
            loss.backward();
            (loss.double_value(&[]), x.grad())
        };
        for chunk in [None, Some(1), Some(5), Some(16)] {
            let (z1, z2) = (
                x.narrow(0, 0, 8).copy().set_requires_grad(true),
                x.narrow(0, 8, 8).copy().set_requires_grad(true),
            );
            let config = InfoNceConfig::new(0.5)
                .with_decoupled(decoupled)
                .with_chunk_size(chunk);
            let loss = InfoNce::new(config).unwrap().views(&z1, &z2).unwrap();
            loss.backward();
            assert!(
                (loss.double_value(&[]) - reference.0).abs() < 1e-6,
                "chunk {chunk:?} dcl {decoupled}"
            );
            let grad = Tensor::cat(&[z1.grad(), z2.grad()], 0);
            let diff = (grad - &reference.1).abs().max().double_value(&[]);
            assert!(
                diff < 1e-6,
                "chunk {chunk:?} dcl {decoupled}: gradients differ by {diff}"
            );
        }
    }
}
