//! Benchmark W3 (`../shared/benchmarks.md`): each loss forward + backward, time and peak
//! memory, on 2 threads. The PyTorch peer is `bench/peers/losses_w3.py`.
//!
//! `cargo run --release -p contrastive-losses --example w3` prints one row per workload:
//! median time of 5 runs after a warm-up, and the peak resident memory added by one run,
//! measured in a fresh child process per workload (`w3 --memory NAME`).

#![allow(clippy::print_stdout)]

use std::time::Instant;

use contrastive_losses::{
    ContrastiveConfig, ContrastiveLoss, InfoNce, InfoNceConfig, Loss, Mining, TripletConfig,
    TripletLoss,
};
use contrastive_tensor::{Device, Kind, Tensor, seed_all, set_threads};

const D: i64 = 128;

/// The workloads, by name: each returns a closure doing one forward + backward.
fn workload(name: &str) -> Box<dyn Fn()> {
    seed_all(0);
    let cpu = (Kind::Float, Device::Cpu);
    if let Some(rest) = name.strip_prefix("nt_xent_") {
        let (n, chunk) = match rest.split_once('_') {
            Some((n, "chunked")) => (n.parse::<i64>().unwrap(), Some(1024)),
            _ => (rest.parse::<i64>().unwrap(), None),
        };
        let loss = InfoNce::new(InfoNceConfig::new(0.5).with_chunk_size(chunk)).unwrap();
        let z1 = Tensor::randn([n, D], cpu);
        let z2 = Tensor::randn([n, D], cpu);
        return Box::new(move || {
            let (a, b) = (
                z1.copy().set_requires_grad(true),
                z2.copy().set_requires_grad(true),
            );
            loss.views(&a, &b).unwrap().backward();
        });
    }
    match name {
        "triplet_batch_hard_256" => {
            let loss =
                TripletLoss::new(TripletConfig::new(0.2).with_mining(Mining::BatchHard)).unwrap();
            let x = Tensor::randn([256, D], cpu);
            let labels =
                Tensor::arange(256, (Kind::Int64, Device::Cpu)).divide_scalar_mode(8, "floor");
            Box::new(move || {
                let x = x.copy().set_requires_grad(true);
                loss.loss(&x, &labels).unwrap().backward();
            })
        }
        "contrastive_pairs_4096" => {
            let loss = ContrastiveLoss::new(ContrastiveConfig::new(1.0)).unwrap();
            let (a, b) = (Tensor::randn([4096, D], cpu), Tensor::randn([4096, D], cpu));
            let same = Tensor::arange(4096, (Kind::Int64, Device::Cpu)).remainder(2);
            Box::new(move || {
                let a = a.copy().set_requires_grad(true);
                loss.pairs(&a, &b, &same).unwrap().backward();
            })
        }
        other => panic!("unknown workload {other}"),
    }
}

const WORKLOADS: [&str; 8] = [
    "nt_xent_256",
    "nt_xent_1024",
    "nt_xent_4096",
    "nt_xent_256_chunked",
    "nt_xent_1024_chunked",
    "nt_xent_4096_chunked",
    "triplet_batch_hard_256",
    "contrastive_pairs_4096",
];

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn main() {
    set_threads(2).unwrap();
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 && args[1] == "--memory" {
        let run = workload(&args[2]);
        let before = status_kib("VmRSS:");
        // Reset the peak (VmHWM) to the current size, then run once.
        std::fs::write("/proc/self/clear_refs", "5").unwrap();
        run();
        println!("{}", status_kib("VmHWM:").saturating_sub(before));
        return;
    }
    println!("workload,median_ms,peak_mib");
    for name in WORKLOADS {
        let run = workload(name);
        run();
        let mut times: Vec<f64> = (0..5)
            .map(|_| {
                let start = Instant::now();
                run();
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--memory", name])
            .output()
            .unwrap();
        let kib: f64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(f64::NAN);
        println!("{name},{:.1},{:.0}", times[2], kib / 1024.0);
    }
}
