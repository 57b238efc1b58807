//! The losses without negatives (negative cosine, Barlow Twins, VICReg), NNCLR's
//! nearest-neighbour NT-Xent and alignment-and-uniformity against lightly's own values and
//! gradients in
//! `fixtures/self_distillation.json` (made by `fixtures/make_self_distillation.py`), in
//! float64: both sides compute the same formulas in another order, so they agree to about
//! 1e-12 of the values' size.

use contrastive_losses::{
    BarlowTwins, Hypersphere, InfoNce, InfoNceConfig, NearestNeighbourBank, VicReg, negative_cosine,
};
use contrastive_tensor::{Device, Tensor};
use serde_json::Value;

/// Relative agreement asked of float64 results.
const CLOSE: f64 = 1e-9;

fn fixture() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/self_distillation.json"
    ))
    .expect("fixture present");
    serde_json::from_str(&text).unwrap()
}

/// The fixture's `[n, d]` (or `[rows, d]`) matrix `key`.
fn matrix(f: &Value, key: &str) -> Tensor {
    let values: Vec<f64> = f[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} in the fixture"))
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let d = f["d"].as_i64().unwrap();
    Tensor::from_slice(&values).view([-1, d])
}

fn leaf(t: &Tensor) -> Tensor {
    t.copy().set_requires_grad(true)
}

/// Checks `loss` and the gradients of `inputs` (`None`: none expected) against lightly's.
fn agrees(name: &str, case: &Value, loss: &Tensor, inputs: &[&Tensor]) {
    let want = case["loss"].as_f64().unwrap();
    let got = loss.double_value(&[]);
    assert!(
        (got - want).abs() <= CLOSE * want.abs().max(1.0),
        "{name}: loss {got} vs lightly's {want}"
    );
    loss.backward();
    for (i, (input, expected)) in inputs
        .iter()
        .zip(case["grads"].as_array().unwrap())
        .enumerate()
    {
        let grad = input.grad();
        match expected.as_array() {
            None => assert!(
                !grad.defined() || grad.abs().max().double_value(&[]) == 0.0,
                "{name}: input {i} should get no gradient"
            ),
            Some(values) => {
                let want: Vec<f64> = values.iter().map(|v| v.as_f64().unwrap()).collect();
                let want = Tensor::from_slice(&want).view_as(&grad);
                let scale = want.abs().max().double_value(&[]).max(1e-12);
                let off = (&grad - &want).abs().max().double_value(&[]);
                assert!(
                    off <= CLOSE * scale,
                    "{name}: gradient {i} off by {off:e} (largest entry {scale:e})"
                );
            }
        }
    }
}

#[test]
fn negative_cosine_matches_lightly_and_stops_the_gradient_into_its_targets() {
    let f = fixture();
    let (p, z) = (leaf(&matrix(&f, "p")), leaf(&matrix(&f, "b")));
    let loss = negative_cosine(&p, &z).unwrap();
    agrees("negative cosine", &f["negative_cosine"], &loss, &[&p, &z]);
}

#[test]
fn barlow_twins_matches_lightly() {
    let f = fixture();
    for (case, lambda) in [("barlow_twins", 5e-3), ("barlow_twins_lambda_0.1", 0.1)] {
        let (a, b) = (leaf(&matrix(&f, "a")), leaf(&matrix(&f, "b")));
        let loss = BarlowTwins::new(lambda).unwrap().loss(&a, &b).unwrap();
        agrees(case, &f[case], &loss, &[&a, &b]);
    }
    assert!(BarlowTwins::new(-1.0).is_err());
    assert!(BarlowTwins::new(f64::NAN).is_err());
}

#[test]
fn vicreg_matches_lightly() {
    let f = fixture();
    for (case, weights) in [
        ("vicreg", [25.0, 25.0, 1.0]),
        ("vicreg_1_2_3", [1.0, 2.0, 3.0]),
    ] {
        let (a, b) = (leaf(&matrix(&f, "a")), leaf(&matrix(&f, "b")));
        let [lambda, mu, nu] = weights;
        let loss = VicReg::new(lambda, mu, nu).unwrap().loss(&a, &b).unwrap();
        agrees(case, &f[case], &loss, &[&a, &b]);
    }
    assert!(VicReg::new(1.0, f64::INFINITY, 1.0).is_err());
}

#[test]
fn hypersphere_matches_lightly() {
    let f = fixture();
    for (case, [t, lam, alpha]) in [
        ("hypersphere", [1.0, 1.0, 2.0]),
        ("hypersphere_2_0.5_3", [2.0, 0.5, 3.0]),
    ] {
        let (a, b) = (leaf(&matrix(&f, "a")), leaf(&matrix(&f, "b")));
        let loss = Hypersphere::new(t, lam, alpha)
            .unwrap()
            .loss(&a, &b)
            .unwrap();
        agrees(case, &f[case], &loss, &[&a, &b]);
    }
    assert!(Hypersphere::new(0.0, 1.0, 2.0).is_err());
    assert!(Hypersphere::new(1.0, -1.0, 2.0).is_err());
    assert!(Hypersphere::new(1.0, 1.0, f64::NAN).is_err());
    // A kernel too narrow for any pair (every exp(-t d^2) underflows) stays finite.
    let (a, b) = (matrix(&f, "a"), matrix(&f, "b"));
    let narrow = Hypersphere::new(1e4, 1.0, 2.0)
        .unwrap()
        .loss(&a.to_kind(contrastive_tensor::Kind::Float), &b)
        .unwrap();
    assert!(narrow.double_value(&[]).is_finite());
    let one = Tensor::ones([1, 4], (contrastive_tensor::Kind::Double, Device::Cpu));
    let err = Hypersphere::new(1.0, 1.0, 2.0)
        .unwrap()
        .loss(&one, &one)
        .unwrap_err();
    assert!(err.to_string().contains("at least 2"), "{err}");
}

#[test]
fn nnclr_finds_the_same_neighbours_and_loss_as_lightly() {
    let f = fixture();
    let support = matrix(&f, "support");
    let mut bank = NearestNeighbourBank::from_embeddings(&support).unwrap();
    let (a, b) = (matrix(&f, "a"), matrix(&f, "b"));
    let (p0, p1) = (leaf(&matrix(&f, "p")), leaf(&matrix(&f, "p2")));
    let nt_xent = InfoNce::new(InfoNceConfig::new(0.1)).unwrap();
    let (n0, n1) = (bank.nearest(&a).unwrap(), bank.nearest(&b).unwrap());
    assert!(!n0.requires_grad(), "neighbours carry no gradient");
    let loss = (nt_xent.views(&n0, &p1).unwrap() + nt_xent.views(&n1, &p0).unwrap()) * 0.5;
    agrees("nnclr", &f["nnclr"], &loss, &[&p0, &p1]);
    // The second view's embeddings replace the oldest rows, as lightly's update does.
    bank.enqueue(&b).unwrap();
    let after: Vec<f64> = f["nnclr"]["bank_after"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(
        bank.embeddings()
            .equal(&Tensor::from_slice(&after).view_as(&support))
    );
    // A batch that does not divide the bank, or of another width, is refused.
    assert!(bank.enqueue(&a.narrow(0, 0, 5)).is_err());
    assert!(bank.nearest(&a.narrow(1, 0, 3)).is_err());
    assert!(NearestNeighbourBank::new(10, 8, 4, Device::Cpu).is_err());
    // A saved position outside the bank, not one whole number, or one a batch would run
    // past the end from, is an error (never a panic).
    assert!(bank.restore(&support, &Tensor::from(32i64)).is_err());
    assert!(
        bank.restore(&support, &Tensor::from_slice(&[0i64, 1]))
            .is_err()
    );
    assert!(bank.restore(&support, &Tensor::from(1.0f64)).is_err());
    assert!(
        bank.restore(&support.narrow(0, 0, 8), &Tensor::from(0i64))
            .is_err()
    );
    bank.restore(&support, &Tensor::from(20i64)).unwrap();
    assert!(bank.enqueue(&b).is_err());
}
