//! Bad input gives clear errors; MoCo's queue and momentum update behave as MoCo's code.

use contrastive_losses::{
    ContrastiveConfig, ContrastiveLoss, Error, InfoNce, InfoNceConfig, Loss, MocoConfig, MocoQueue,
    SupCon, SupConConfig, TripletConfig, TripletLoss, momentum_update,
};
use contrastive_tensor::{Device, Kind, Tensor, nn, seeded};

/// Six embeddings in three classes, drawn under `seeded` (the tests run in parallel
/// threads and share libtorch's generator).
fn batch() -> (Tensor, Tensor) {
    (
        seeded(1, || Tensor::randn([6, 4], (Kind::Float, Device::Cpu))),
        Tensor::from_slice(&[0i64, 0, 1, 1, 2, 2]),
    )
}

#[test]
fn bad_configs_are_refused_with_the_field_named() {
    for (result, field) in [
        (InfoNce::new(InfoNceConfig::new(0.0)).err(), "temperature"),
        (InfoNce::new(InfoNceConfig::new(-1.0)).err(), "temperature"),
        (
            InfoNce::new(InfoNceConfig::new(0.1).with_chunk_size(Some(0))).err(),
            "chunk_size",
        ),
        (
            SupCon::new(SupConConfig::new(f64::NAN)).err(),
            "temperature",
        ),
        (
            ContrastiveLoss::new(ContrastiveConfig::new(-0.5)).err(),
            "margin",
        ),
        (
            ContrastiveLoss::new(ContrastiveConfig::new(1.0).with_pos_margin(-1.0)).err(),
            "pos_margin",
        ),
        (TripletLoss::new(TripletConfig::new(-0.1)).err(), "margin"),
    ] {
        let err = result.expect("refused");
        assert!(
            matches!(&err, Error::InvalidConfig { field: f, .. } if *f == field),
            "{err}"
        );
    }
}

#[test]
fn mismatched_shapes_and_labels_are_errors() {
    let (x, labels) = batch();
    let loss = InfoNce::new(InfoNceConfig::new(0.5)).unwrap();
    let err = loss.loss(&x, &labels.narrow(0, 0, 5)).unwrap_err();
    assert!(err.to_string().contains("labels must be [6]"), "{err}");
    let err = loss.loss(&x.view([-1]), &labels).unwrap_err();
    assert!(err.to_string().contains("[N, D]"), "{err}");
    let err = loss.loss(&x, &labels.to_kind(Kind::Float)).unwrap_err();
    assert!(err.to_string().contains("integers"), "{err}");
    let err = loss.views(&x, &x.narrow(0, 0, 5)).unwrap_err();
    assert!(err.to_string().contains("shape"), "{err}");
    let distinct = Tensor::arange(6, (Kind::Int64, Device::Cpu));
    assert!(matches!(
        loss.loss(&x, &distinct),
        Err(Error::NoPositives { .. })
    ));
    let contrastive = ContrastiveLoss::new(ContrastiveConfig::new(1.0)).unwrap();
    let err = contrastive
        .pairs(&x, &x, &Tensor::from_slice(&[1i64, 0]))
        .unwrap_err();
    assert!(err.to_string().contains("`same` must be [6]"), "{err}");
}

#[test]
fn nan_embeddings_are_reported_not_propagated() {
    let (x, labels) = batch();
    let poisoned = x.copy();
    let _ = poisoned.get(2).get(1).fill_(f64::NAN);
    let losses: Vec<Box<dyn Loss>> = vec![
        Box::new(InfoNce::new(InfoNceConfig::new(0.5)).unwrap()),
        Box::new(SupCon::new(SupConConfig::new(0.1)).unwrap()),
        Box::new(TripletLoss::new(TripletConfig::new(0.2)).unwrap()),
        Box::new(ContrastiveLoss::new(ContrastiveConfig::new(1.0)).unwrap()),
    ];
    for loss in &losses {
        assert!(matches!(
            loss.loss(&poisoned, &labels),
            Err(Error::NonFinite {
                what: "embeddings",
                ..
            })
        ));
    }
    let infinite = x.copy();
    let _ = infinite.get(0).get(0).fill_(f64::INFINITY);
    assert!(matches!(
        losses[0].loss(&infinite, &labels),
        Err(Error::NonFinite { .. })
    ));
}

#[test]
fn bf16_embeddings_are_computed_in_fp32() {
    let (x, labels) = batch();
    let loss = SupCon::new(SupConConfig::new(0.1)).unwrap();
    let from_bf16 = loss.loss(&x.to_kind(Kind::BFloat16), &labels).unwrap();
    let from_fp32 = loss
        .loss(&x.to_kind(Kind::BFloat16).to_kind(Kind::Float), &labels)
        .unwrap();
    assert_eq!(from_bf16.kind(), Kind::Float);
    assert_eq!(from_bf16.double_value(&[]), from_fp32.double_value(&[]));
}

#[test]
fn the_moco_queue_is_a_fifo_of_normalised_keys() {
    let config = MocoConfig::default().with_queue_size(6);
    let (mut queue, batches) = seeded(2, || {
        let queue = MocoQueue::new(config, 4, 2, 100, Device::Cpu).unwrap();
        let batches: Vec<Tensor> = (0..4)
            .map(|_| Tensor::randn([2, 4], (Kind::Float, Device::Cpu)) * 3.0)
            .collect();
        (queue, batches)
    });
    let norms = queue.keys().norm_scalaropt_dim(2.0, [1], false);
    assert!(norms.allclose(
        &Tensor::ones([6], (Kind::Float, Device::Cpu)),
        1e-5,
        1e-6,
        false
    ));
    for b in &batches {
        queue.enqueue(b).unwrap();
    }
    // Four batches of 2 into 6 slots: the 4th batch overwrote the 1st.
    let unit = |t: &Tensor| t / t.norm_scalaropt_dim(2.0, [1], true);
    assert!(
        queue
            .keys()
            .narrow(0, 0, 2)
            .allclose(&unit(&batches[3]), 1e-6, 1e-6, false)
    );
    assert!(
        queue
            .keys()
            .narrow(0, 2, 2)
            .allclose(&unit(&batches[1]), 1e-6, 1e-6, false)
    );
    let state = queue.state();
    assert_eq!(state[1].1.int64_value(&[]), 2);

    let mut restored = seeded(5, || MocoQueue::new(config, 4, 2, 100, Device::Cpu)).unwrap();
    restored.restore(&state[0].1, &state[1].1).unwrap();
    assert!(restored.keys().equal(queue.keys()));
    assert!(
        queue
            .enqueue(&seeded(3, || Tensor::randn(
                [4, 4],
                (Kind::Float, Device::Cpu)
            )))
            .is_err(),
        "4 does not divide 6"
    );
    assert!(
        queue
            .enqueue(&seeded(4, || Tensor::randn(
                [2, 5],
                (Kind::Float, Device::Cpu)
            )))
            .is_err(),
        "wrong width"
    );
}

#[test]
fn moco_queues_that_do_not_fit_the_run_are_refused() {
    let config = MocoConfig::default();
    let err = MocoQueue::new(config, 128, 250, 1_000_000, Device::Cpu).unwrap_err();
    assert!(
        err.to_string().contains("multiple of the batch size 250"),
        "{err}"
    );
    let err = MocoQueue::new(config, 128, 256, 60_000, Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("larger than the dataset"), "{err}");
    assert!(MocoQueue::new(config.with_momentum(1.5), 128, 256, 100_000, Device::Cpu).is_err());
}

#[test]
fn the_momentum_update_is_an_ema_of_parameters_and_buffers() {
    // Layers draw their initial weights: under `seeded`, like every draw of this binary.
    let make = |fill: f64| {
        let vs = nn::VarStore::new(Device::Cpu);
        seeded(6, || {
            let _ = nn::linear(vs.root() / "fc", 3, 2, Default::default());
            let _ = nn::batch_norm1d(vs.root() / "bn", 2, Default::default());
        });
        for (_, mut v) in vs.variables() {
            let _ = contrastive_tensor::no_grad(|| v.fill_(fill));
        }
        vs
    };
    let (key, query) = (make(1.0), make(3.0));
    momentum_update(&key, &query, 0.9).unwrap();
    for (name, v) in key.variables() {
        assert!(
            (v.mean(Kind::Float).double_value(&[]) - 1.2).abs() < 1e-6,
            "{name}"
        );
    }
    let other = nn::VarStore::new(Device::Cpu);
    let _ = seeded(7, || {
        nn::linear(other.root() / "fc", 3, 5, Default::default())
    });
    assert!(momentum_update(&key, &other, 0.9).is_err());
}
