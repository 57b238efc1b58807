//! Finite-difference checks in f64: the analytic gradient of every loss agrees with central
//! differences of the loss itself.

use contrastive_losses::{
    ContrastiveConfig, ContrastiveLoss, Distance, InfoNce, InfoNceConfig, Loss, Mining, MocoConfig,
    MocoQueue, SupCon, SupConConfig, TripletConfig, TripletLoss,
};
use contrastive_tensor::{Device, Kind, Tensor, no_grad, seeded};

const STEP: f64 = 1e-6;

/// Compares `f`'s autograd gradient at `x` with central differences, element by element.
fn check(name: &str, x: &Tensor, f: &dyn Fn(&Tensor) -> Tensor) {
    let leaf = x.copy().set_requires_grad(true);
    f(&leaf).backward();
    let analytic = leaf.grad();
    let n = x.numel() as i64;
    let flat = x.view(-1);
    let mut worst: f64 = 0.0;
    for i in 0..n {
        let at = |delta: f64| {
            let moved = flat.copy();
            no_grad(|| {
                let _ = moved.get(i).g_add_scalar_(delta);
            });
            f(&moved.view_as(x)).double_value(&[])
        };
        let numeric = (at(STEP) - at(-STEP)) / (2.0 * STEP);
        let exact = analytic.view(-1).double_value(&[i]);
        worst = worst.max((numeric - exact).abs() / (1.0 + exact.abs()));
    }
    assert!(
        worst < 1e-6,
        "{name}: analytic and numeric gradients differ by {worst:e}"
    );
}

fn inputs() -> (Tensor, Tensor) {
    // Under `seeded`: the tests run in parallel threads and draw from one global generator.
    let x = seeded(9, || Tensor::randn([10, 5], (Kind::Double, Device::Cpu)));
    let labels = Tensor::from_slice(&[0i64, 1, 2, 0, 1, 2, 0, 1, 2, 3]);
    (x, labels)
}

#[test]
fn margin_losses_have_exact_gradients() {
    let (x, labels) = inputs();
    for distance in [Distance::Euclidean, Distance::Cosine] {
        let loss = ContrastiveLoss::new(
            ContrastiveConfig::new(1.5)
                .with_pos_margin(0.1)
                .with_distance(distance),
        )
        .unwrap();
        check(&format!("contrastive {distance:?}"), &x, &|x| {
            loss.loss(x, &labels).unwrap()
        });
    }
    let raw = ContrastiveLoss::new(ContrastiveConfig::new(3.0).with_normalize(false)).unwrap();
    let (a, b) = (x.narrow(0, 0, 5), x.narrow(0, 5, 5));
    let same = Tensor::from_slice(&[1i64, 0, 1, 0, 0]);
    check("contrastive pairs", &a, &|a| {
        raw.pairs(a, &b, &same).unwrap()
    });
    for mining in [Mining::BatchAll, Mining::BatchHard, Mining::SemiHard] {
        for soft in [false, true] {
            let loss = TripletLoss::new(
                TripletConfig::new(0.4)
                    .with_mining(mining)
                    .with_soft_margin(soft),
            )
            .unwrap();
            check(&format!("triplet {mining:?} soft={soft}"), &x, &|x| {
                loss.loss(x, &labels).unwrap()
            });
        }
    }
    let explicit = TripletLoss::new(TripletConfig::new(2.0).with_normalize(false)).unwrap();
    let (p, n) = (x.narrow(0, 5, 3), x.narrow(0, 2, 3));
    check("triplet explicit", &x.narrow(0, 0, 3), &|a| {
        explicit.triplets(a, &p, &n).unwrap()
    });
}

#[test]
fn softmax_losses_have_exact_gradients() {
    let (x, labels) = inputs();
    for decoupled in [false, true] {
        for chunk in [None, Some(3)] {
            let config = InfoNceConfig::new(0.3)
                .with_decoupled(decoupled)
                .with_chunk_size(chunk);
            let loss = InfoNce::new(config).unwrap();
            check(
                &format!("InfoNCE dcl={decoupled} chunk={chunk:?}"),
                &x,
                &|x| loss.loss(x, &labels).unwrap(),
            );
        }
    }
    for chunk in [None, Some(3)] {
        let loss = InfoNce::new(InfoNceConfig::new(0.3).with_chunk_size(chunk)).unwrap();
        let other = x.narrow(0, 5, 5).copy();
        check(
            &format!("NT-Xent views chunk={chunk:?}"),
            &x.narrow(0, 0, 5),
            &|z1| loss.views(z1, &other).unwrap(),
        );
    }
    let supcon = SupCon::new(SupConConfig::new(0.2)).unwrap();
    check("SupCon", &x, &|x| supcon.loss(x, &labels).unwrap());
    let queue = seeded(11, || {
        MocoQueue::new(
            MocoConfig::default().with_queue_size(12),
            5,
            4,
            100,
            Device::Cpu,
        )
    })
    .unwrap();
    let keys = seeded(10, || Tensor::randn([4, 5], (Kind::Double, Device::Cpu)));
    check("MoCo", &x.narrow(0, 0, 4), &|q| {
        queue.loss(q, &keys).unwrap()
    });
}
