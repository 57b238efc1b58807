//! Each loss forward + backward on 128-wide embeddings: NT-Xent (two views of 256), SupCon,
//! triplet with each miner (32 classes x 8), margin contrastive over the pairs of a batch,
//! and MoCo's queue loss (256 queries against 4096 keys).

use contrastive_losses::{
    ContrastiveConfig, ContrastiveLoss, InfoNce, InfoNceConfig, Loss, Mining, MocoConfig,
    MocoQueue, SupCon, SupConConfig, TripletConfig, TripletLoss,
};
use contrastive_tensor::{Device, Kind, Tensor, seed_all};
use criterion::{Criterion, criterion_group, criterion_main};

const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

fn losses(c: &mut Criterion) {
    seed_all(0);
    let mut group = c.benchmark_group("loss_forward_backward");
    let (z1, z2) = (
        Tensor::randn([256, 128], CPU),
        Tensor::randn([256, 128], CPU),
    );
    let nt_xent = InfoNce::new(InfoNceConfig::new(0.5)).unwrap();
    group.bench_function("nt_xent_2x256", |b| {
        b.iter(|| {
            let a = z1.copy().set_requires_grad(true);
            nt_xent.views(&a, &z2).unwrap().backward();
        })
    });
    let x = Tensor::randn([256, 128], CPU);
    let labels = Tensor::arange(256, (Kind::Int64, Device::Cpu)).divide_scalar_mode(8, "floor");
    let supcon = SupCon::new(SupConConfig::new(0.1)).unwrap();
    let pairs = ContrastiveLoss::new(ContrastiveConfig::new(0.5)).unwrap();
    let mut labeled: Vec<(String, Box<dyn Loss>)> = vec![
        ("supcon_256".into(), Box::new(supcon)),
        ("contrastive_pairs_256".into(), Box::new(pairs)),
    ];
    for (name, mining) in [
        ("batch_all", Mining::BatchAll),
        ("batch_hard", Mining::BatchHard),
        ("semi_hard", Mining::SemiHard),
    ] {
        let loss = TripletLoss::new(TripletConfig::new(0.2).with_mining(mining)).unwrap();
        labeled.push((format!("triplet_{name}_256"), Box::new(loss)));
    }
    for (name, loss) in &labeled {
        group.bench_function(name.as_str(), |b| {
            b.iter(|| {
                let e = x.copy().set_requires_grad(true);
                loss.loss(&e, &labels).unwrap().backward();
            })
        });
    }
    let moco = MocoQueue::new(
        MocoConfig::default().with_queue_size(4096),
        128,
        256,
        65_536,
        Device::Cpu,
    )
    .unwrap();
    group.bench_function("moco_queue_256_vs_4096", |b| {
        b.iter(|| {
            let q = z1.copy().set_requires_grad(true);
            moco.loss(&q, &z2).unwrap().backward();
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = losses
}
criterion_main!(benches);
