//! Every loss against the PyTorch reference in `fixtures/reference.json` (made by
//! `fixtures/make_fixtures.py`), and InfoNCE's chunked and two-view paths against its dense
//! one, each within the rounding error its floating-point arithmetic allows ([`bound`]).

use contrastive_losses::{
    ContrastiveConfig, ContrastiveLoss, Distance, InfoNce, InfoNceConfig, Loss, Mining, MocoConfig,
    MocoQueue, SupCon, SupConConfig, TripletConfig, TripletLoss,
};
use contrastive_tensor::{Device, Kind, Tensor, seeded};
use serde_json::Value;

/// The fixture's batch: `N` embeddings of dimension `D`.
const N: i64 = 16;
const D: i64 = 8;

/// Unit roundoff (half the machine epsilon) of fp32 and fp64.
const FP32: f64 = f32::EPSILON as f64 / 2.0;
const FP64: f64 = f64::EPSILON / 2.0;

/// How far two computations of one loss over the fixture's batch may drift apart when both
/// are correct but round differently, in arithmetic of unit roundoff `u`, for a result whose
/// terms have magnitude `scale`: an estimate from the arithmetic, not a fixed number of ulps.
///
/// Rounding error grows with the length of each chain of operations (Higham, *Accuracy and
/// Stability of Numerical Algorithms*, 2nd ed., 2002, §3.1: a k-term sum or dot product is
/// off by at most `gamma_k = k u / (1 - k u)` times the sum of its terms' magnitudes). Here a
/// chain is: normalising an embedding (a `D`-term sum of squares), one distance or similarity
/// (a `D`-term dot product), then a row's reduction over the batch (log-sum-exp, hinge sums,
/// `N` terms) and the mean over rows (`N` terms): `2 D + 2 N` operations, each side, and two
/// sides. The paths differ in order (dense vs blocks, mask vs index, our kernels vs
/// PyTorch's, and whichever kernel the BLAS picks for a small matrix product on this CPU), so
/// any fixed number of ulps is a guess. A temperature off by 1 % moves the loss and its
/// gradients more than ten times past this (`the_bound_catches_a_real_error`).
fn bound(u: f64, scale: f64) -> f64 {
    let chain = (2 * D + 2 * N) as f64;
    2.0 * chain * u * scale
}

/// [`bound`] for a loss: its terms are at most the loss itself or the largest similarity or
/// distance (`largest`, e.g. 1/tau), whichever is more.
fn loss_bound(u: f64, loss: f64, largest: f64) -> f64 {
    bound(u, loss.abs().max(largest))
}

/// [`bound`] for a gradient: each entry sums about `2 N` terms (the pairs its row takes part
/// in, both ways) that cancel partly, each up to the size of the largest entry times the
/// largest intermediate, so their magnitudes add to about `2 N` of those.
fn gradient_bound(u: f64, largest_entry: f64, largest: f64) -> f64 {
    bound(u, 2.0 * N as f64 * largest_entry * largest.max(1.0))
}

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
        let mut queue = seeded(1, || MocoQueue::new(config, d, 8, 1000, Device::Cpu)).unwrap();
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

/// The largest squared distance between two of the fixture's raw embeddings.
fn spread(fx: &Value) -> f64 {
    let x = tensor(&fx["embeddings"], N, D);
    let d2 = (x.unsqueeze(1) - x.unsqueeze(0))
        .square()
        .sum_dim_intlist(2, false, None::<Kind>);
    d2.max().double_value(&[])
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
        // The largest intermediate: a similarity over the temperature, a squared distance
        // (at most 4 between unit vectors, up to the batch's spread between raw ones).
        let largest = match case["params"]["temperature"].as_f64() {
            Some(temperature) => 1.0 / temperature,
            None if case["params"]["normalize"] == false => spread(&fx),
            None => 4.0,
        };
        let tolerance = loss_bound(FP32, expected, largest);
        assert!(
            (loss - expected).abs() <= tolerance,
            "{name}: loss {loss:e} vs PyTorch {expected:e} (bound {tolerance:e})"
        );
        for (i, (grad, reference)) in grads
            .iter()
            .zip(case["grads"].as_array().unwrap())
            .enumerate()
        {
            let reference = floats(reference);
            let entry = reference.iter().fold(0f64, |m, g| m.max(g.abs() as f64));
            let tolerance = gradient_bound(FP32, entry, largest);
            let diff = max_abs_diff(grad, &reference);
            assert!(
                diff <= tolerance,
                "{name}: gradient {i} differs by {diff:e} (bound {tolerance:e})"
            );
        }
    }
}

/// The temperature of the cross-path checks below.
const TAU: f64 = 0.5;

/// InfoNCE's loss and the gradient with respect to `x` (all views, in order), computed by
/// `path` from a fresh leaf copy of `x`.
fn loss_and_grad(x: &Tensor, path: &dyn Fn(&Tensor) -> Tensor) -> (f64, Tensor) {
    let leaf = x.copy().set_requires_grad(true);
    let loss = path(&leaf);
    loss.backward();
    (loss.double_value(&[]), leaf.grad())
}

/// Asserts that two computations of one loss agree within [`bound`] for unit roundoff `u`.
fn assert_same(what: &str, u: f64, (loss, grad): &(f64, Tensor), reference: &(f64, Tensor)) {
    let tolerance = loss_bound(u, reference.0, 1.0 / TAU);
    assert!(
        (loss - reference.0).abs() <= tolerance,
        "{what}: loss {loss:e} vs {:e} (bound {tolerance:e})",
        reference.0
    );
    let entry = reference.1.abs().max().double_value(&[]);
    let tolerance = gradient_bound(u, entry, 1.0 / TAU);
    let diff = (grad - &reference.1).abs().max().double_value(&[]);
    assert!(
        diff <= tolerance,
        "{what}: gradients differ by {diff:e} (bound {tolerance:e})"
    );
}

/// The fixture's embeddings in each precision the losses compute in, with its unit roundoff.
fn precisions(fx: &Value) -> [(Tensor, f64); 2] {
    let x = tensor(&fx["embeddings"], N, D);
    [(x.shallow_clone(), FP32), (x.to_kind(Kind::Double), FP64)]
}

fn info_nce(decoupled: bool, chunk: Option<usize>) -> InfoNce {
    let config = InfoNceConfig::new(TAU)
        .with_decoupled(decoupled)
        .with_chunk_size(chunk);
    InfoNce::new(config).unwrap()
}

#[test]
fn chunked_info_nce_gives_the_dense_loss_and_gradients() {
    let fx = fixture();
    let labels = fixture_labels(&fx);
    for (x, u) in precisions(&fx) {
        for decoupled in [false, true] {
            let run = |chunk| {
                loss_and_grad(&x, &|x| {
                    info_nce(decoupled, chunk).loss(x, &labels).unwrap()
                })
            };
            let dense = run(None);
            for chunk in [1, 3, 5, 16] {
                let what = format!("{:?} chunk {chunk} decoupled {decoupled}", x.kind());
                assert_same(&what, u, &run(Some(chunk)), &dense);
            }
        }
        // Explicit masks give the same numbers as labels.
        let ids = Tensor::arange(N / 2, (Kind::Int64, Device::Cpu)).repeat([2]);
        let same = ids.unsqueeze(0).eq_tensor(&ids.unsqueeze(1));
        let eye = Tensor::eye(N, (Kind::Bool, Device::Cpu));
        let (positive, negative) = (same.logical_and(&eye.logical_not()), same.logical_not());
        let loss = info_nce(false, None);
        let masked = loss_and_grad(&x, &|x| loss.masked(x, &positive, &negative).unwrap());
        let labelled = loss_and_grad(&x, &|x| loss.loss(x, &ids).unwrap());
        assert_same(&format!("{:?} masks", x.kind()), u, &masked, &labelled);
    }
}

/// Two views through [`InfoNce::views`]: the loss and the gradient of both views.
fn views(x: &Tensor, loss: &InfoNce) -> (f64, Tensor) {
    loss_and_grad(x, &|x| {
        loss.views(&x.narrow(0, 0, N / 2), &x.narrow(0, N / 2, N / 2))
            .unwrap()
    })
}

#[test]
fn chunked_views_give_the_dense_loss_and_gradients() {
    let fx = fixture();
    let ids = Tensor::arange(N / 2, (Kind::Int64, Device::Cpu)).repeat([2]);
    for (x, u) in precisions(&fx) {
        for decoupled in [false, true] {
            // The general (label) path is the reference for the two-view path.
            let reference =
                loss_and_grad(&x, &|x| info_nce(decoupled, None).loss(x, &ids).unwrap());
            for chunk in [None, Some(1), Some(5), Some(16)] {
                let what = format!("{:?} views chunk {chunk:?} decoupled {decoupled}", x.kind());
                assert_same(
                    &what,
                    u,
                    &views(&x, &info_nce(decoupled, chunk)),
                    &reference,
                );
            }
        }
    }
}

#[test]
fn the_bound_catches_a_real_error() {
    // A temperature off by 1 % must move the loss and its gradients ten times past the
    // bound, in both precisions, or the bound would be too loose to mean anything.
    let fx = fixture();
    for (x, u) in precisions(&fx) {
        let right = views(&x, &info_nce(false, None));
        let config = InfoNceConfig::new(TAU * 1.01);
        let wrong = views(&x, &InfoNce::new(config).unwrap());
        let loss_tolerance = loss_bound(u, right.0, 1.0 / TAU);
        assert!((wrong.0 - right.0).abs() > 10.0 * loss_tolerance);
        let entry = right.1.abs().max().double_value(&[]);
        let grad_tolerance = gradient_bound(u, entry, 1.0 / TAU);
        let diff = (&wrong.1 - &right.1).abs().max().double_value(&[]);
        assert!(
            diff > 10.0 * grad_tolerance,
            "{diff:e} vs {grad_tolerance:e}"
        );
    }
}

#[test]
fn every_loss_is_bitwise_repeatable_across_calls_and_threads() {
    // Fixed inputs and thread count give the same bits every time, from any thread: no
    // state is shared between calls, and no kernel picks its order by load. (Across CPUs
    // and libtorch builds only [`bound`] holds.)
    let fx = fixture();
    let bits = |case: &Value| {
        let (loss, grads) = ours(case, &fx);
        let grads: Vec<Vec<u32>> = grads
            .iter()
            .map(|g| {
                let values = Vec::<f32>::try_from(g.view(-1)).unwrap();
                values.iter().map(|v| v.to_bits()).collect()
            })
            .collect();
        (loss.to_bits(), grads)
    };
    let cases = fx["cases"].as_array().unwrap();
    let first: Vec<_> = cases.iter().map(bits).collect();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..10 {
                    for (case, expected) in cases.iter().zip(&first) {
                        assert!(bits(case) == *expected, "{} changed", case["name"]);
                    }
                }
            });
        }
    });
}
