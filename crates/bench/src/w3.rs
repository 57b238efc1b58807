//! W3: each loss forward + backward, d = 128: NT-Xent at N = 256, 1024, 4096 (dense and
//! chunked), triplet with batch-all, batch-hard and semi-hard mining (32 classes x 8),
//! margin contrastive on 4096 pairs. The peer is `bench/peers/losses_w3.py` (pytorch-metric-learning, and the plain
//! PyTorch cross-entropy form of NT-Xent that lightly uses).

use contrastive_losses::{
    ContrastiveConfig, ContrastiveLoss, InfoNce, InfoNceConfig, Loss, Mining, TripletConfig,
    TripletLoss,
};
use contrastive_tensor::{Device, Kind, Tensor, seed_all};

use crate::{Row, Scale, median_ms};

const D: i64 = 128;

/// The triplet workloads' miners, by the name their rows carry.
const MINERS: [(&str, Mining); 3] = [
    ("batch_all", Mining::BatchAll),
    ("batch_hard", Mining::BatchHard),
    ("semi_hard", Mining::SemiHard),
];

/// The workload names at `scale`.
pub fn names(scale: Scale) -> Vec<String> {
    let sizes = scale.pick(vec![256, 1024, 4096], vec![32, 64]);
    let mut names: Vec<String> = sizes.iter().map(|n| format!("nt_xent_{n}")).collect();
    names.extend(sizes.iter().map(|n| format!("nt_xent_{n}_chunked")));
    for (mining, _) in MINERS {
        names.push(format!("triplet_{mining}_{}", scale.pick(256, 32)));
    }
    names.push(format!("contrastive_pairs_{}", scale.pick(4096, 256)));
    names
}

/// One forward + backward of the workload `name` (see [`names`]), ready to be timed.
pub fn workload(name: &str) -> anyhow::Result<Box<dyn Fn()>> {
    seed_all(0);
    let cpu = (Kind::Float, Device::Cpu);
    let size = |s: &str| -> anyhow::Result<i64> {
        s.parse()
            .map_err(|_| anyhow::anyhow!("no size in workload {name:?}"))
    };
    if let Some(rest) = name.strip_prefix("nt_xent_") {
        let (n, chunk) = match rest.split_once('_') {
            Some((n, "chunked")) => (size(n)?, Some(1024.min(size(n)? as usize / 2))),
            _ => (size(rest)?, None),
        };
        let loss = InfoNce::new(InfoNceConfig::new(0.5).with_chunk_size(chunk))?;
        let (z1, z2) = (Tensor::randn([n, D], cpu), Tensor::randn([n, D], cpu));
        return Ok(Box::new(move || {
            let (a, b) = (
                z1.copy().set_requires_grad(true),
                z2.copy().set_requires_grad(true),
            );
            loss.views(&a, &b).expect("shapes are right").backward();
        }));
    }
    if let Some((mining, n)) = name
        .strip_prefix("triplet_")
        .and_then(|rest| rest.rsplit_once('_'))
        && let Some(&(_, mining)) = MINERS.iter().find(|(m, _)| *m == mining)
    {
        let n = size(n)?;
        let loss = TripletLoss::new(TripletConfig::new(0.2).with_mining(mining))?;
        let x = Tensor::randn([n, D], cpu);
        let labels = Tensor::arange(n, (Kind::Int64, Device::Cpu)).divide_scalar_mode(8, "floor");
        return Ok(Box::new(move || {
            let x = x.copy().set_requires_grad(true);
            loss.loss(&x, &labels).expect("shapes are right").backward();
        }));
    }
    if let Some(n) = name.strip_prefix("contrastive_pairs_") {
        let n = size(n)?;
        let loss = ContrastiveLoss::new(ContrastiveConfig::new(1.0))?;
        let (a, b) = (Tensor::randn([n, D], cpu), Tensor::randn([n, D], cpu));
        let same = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(2);
        return Ok(Box::new(move || {
            let a = a.copy().set_requires_grad(true);
            loss.pairs(&a, &b, &same)
                .expect("shapes are right")
                .backward();
        }));
    }
    anyhow::bail!("unknown W3 workload {name:?}")
}

/// The W3 rows at `scale`: the median of `runs` timed runs, and the peak memory one run
/// adds as `peak(name)` measures it (a fresh process per workload, for a clean peak).
pub fn rows(
    scale: Scale,
    runs: usize,
    peak: &dyn Fn(&str) -> Option<f64>,
) -> anyhow::Result<Vec<Row>> {
    names(scale)
        .iter()
        .map(|name| {
            let run = workload(name)?;
            let mut row = Row::ms("W3", name, median_ms(runs, &*run));
            row.peak_mib = peak(name);
            Ok(row)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_small_workload_runs() {
        let rows = rows(Scale::Small, 1, &|_| None).unwrap();
        assert_eq!(rows.len(), names(Scale::Small).len());
        assert!(rows.iter().all(|r| r.value > 0.0), "{rows:?}");
        assert!(workload("nt_xent_x").is_err());
        assert!(workload("softmax_9").is_err());
        assert!(workload("triplet_easy_9").is_err());
    }
}
