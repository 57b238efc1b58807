//! `dist` across real processes: this test binary starts copies of itself as the ranks of a
//! group on 127.0.0.1 (with the variables torchrun sets) and checks what each rank sees:
//! exact collectives, exact gradients through the gather, and clear errors when a peer
//! never arrives or dies. Its own binary without the test harness, so that each worker is a
//! plain process and a hung one is killed by the watchdog rather than hanging CI.

// The orchestrator reports each scenario, and workers tell it how far they got, on stdout.
#![allow(clippy::print_stdout)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use contrastive_e2e::{finish, free_port};
use contrastive_tensor::dist::{DistFailure, InitOptions, ProcessGroup, Reduce};
use contrastive_tensor::{Device, Error, Kind, Tensor};

const WORKER: &str = "CONTRASTIVE_DIST_WORKER";
/// The longest any scenario may take before its workers are killed.
const WATCHDOG: Duration = Duration::from_secs(90);

fn main() {
    if let Ok(scenario) = std::env::var(WORKER) {
        contrastive_tensor::set_threads(1).unwrap();
        worker(&scenario);
        return;
    }
    let mut failed = Vec::new();
    for (name, check) in [
        ("collectives on 2 ranks", all_ranks("collectives", 2)),
        ("collectives on 3 ranks", all_ranks("collectives", 3)),
        ("gather gradients on 2 ranks", all_ranks("gradients", 2)),
        ("gather gradients on 3 ranks", all_ranks("gradients", 3)),
        (
            "data-parallel gradients on 2 ranks",
            all_ranks("data-parallel", 2),
        ),
        (
            "data-parallel gradients on 3 ranks",
            all_ranks("data-parallel", 3),
        ),
        ("a peer that never arrives", never_arrives()),
        ("a peer that dies", dead_peer(2, 1)),
        ("a peer that dies among three", dead_peer(3, 1)),
        ("the rank that hosts the store dies", dead_peer(2, 0)),
    ] {
        match check {
            Ok(()) => println!("dist: {name} ... ok"),
            Err(why) => {
                println!("dist: {name} ... FAILED\n{why}");
                failed.push(name);
            }
        }
    }
    assert!(failed.is_empty(), "failed: {failed:?}");
}

/// Starts `ranks` of a group of `world` running `scenario`.
fn start(scenario: &str, world: usize, ranks: &[usize], port: u16) -> Vec<Child> {
    ranks
        .iter()
        .map(|rank| {
            Command::new(std::env::current_exe().unwrap())
                .env(WORKER, scenario)
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", world.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("LOCAL_WORLD_SIZE", world.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect()
}

/// Every rank of a group of `world` running `scenario`, to a clean end.
fn all_ranks(scenario: &str, world: usize) -> Result<(), String> {
    let ranks: Vec<usize> = (0..world).collect();
    finish(start(scenario, world, &ranks, free_port()), WATCHDOG).map(drop)
}

fn never_arrives() -> Result<(), String> {
    // Rank 0 of two, alone: it must give up after its timeout with a message, not hang.
    let outputs = finish(start("alone", 2, &[0], free_port()), WATCHDOG)?;
    reported(&outputs[0], "ALONE-OK")
}

/// Kills rank `victim` of `world` once the group works; every other rank must fail its next
/// collective within the timeout and name the lost rank.
fn dead_peer(world: usize, victim: usize) -> Result<(), String> {
    let ranks: Vec<usize> = (0..world).collect();
    let mut children = start(&format!("dies:{victim}"), world, &ranks, free_port());
    let mut dead = children.remove(victim);
    // The victim says when the group works, then is killed (SIGKILL: no goodbye to its peers).
    let stdout = dead.stdout.take().unwrap();
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line == "READY");
    dead.kill().unwrap();
    dead.wait().unwrap();
    let outputs = finish(children, WATCHDOG);
    if !ready {
        return Err("a rank never reported READY".into());
    }
    let named = format!("rank {victim} of {world}");
    for output in outputs? {
        reported(&output, "SURVIVOR-OK")?;
        if !output.contains(&named) {
            return Err(format!("the lost rank ({named}) is not named:\n{output}"));
        }
    }
    Ok(())
}

/// `Ok` when a worker's `output` holds its `mark` line, which is shown (the error it met).
fn reported(output: &str, mark: &str) -> Result<(), String> {
    let line = output
        .lines()
        .find(|l| l.starts_with(mark))
        .ok_or_else(|| output.to_owned())?;
    println!("      {line}");
    Ok(())
}

fn options(timeout_ms: u64) -> InitOptions {
    InitOptions {
        timeout: Duration::from_millis(timeout_ms),
        ..InitOptions::default()
    }
}

fn worker(scenario: &str) {
    match scenario {
        "collectives" => worker_collectives(),
        "gradients" => worker_gradients(),
        "data-parallel" => worker_data_parallel(),
        "alone" => worker_alone(),
        dies if dies.starts_with("dies:") => worker_dies(dies["dies:".len()..].parse().unwrap()),
        other => panic!("unknown scenario {other}"),
    }
}

/// `t`'s values as `f64` (exact for the small whole numbers and halves compared here).
fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(&t.flatten(0, -1).to_kind(Kind::Double)).unwrap()
}

fn worker_collectives() {
    let group = ProcessGroup::from_env(&options(20_000)).unwrap();
    let (rank, world) = (group.rank(), group.world_size());
    assert!(world > 1 && rank < world);
    let (r, w) = (rank as f64, world as f64);

    // Sums and means, exact, in three kinds.
    let mut t = Tensor::full([4], r + 1.0, (Kind::Float, Device::Cpu));
    group.all_reduce_(&mut t, Reduce::Sum).unwrap();
    assert_eq!(values(&t), vec![w * (w + 1.0) / 2.0; 4]);
    let mut t = Tensor::full([3], r + 1.0, (Kind::Double, Device::Cpu));
    group.all_reduce_(&mut t, Reduce::Mean).unwrap();
    assert_eq!(values(&t), vec![(w + 1.0) / 2.0; 3]);
    let mut t = Tensor::full([2], rank as i64 * 10, (Kind::Int64, Device::Cpu));
    group.all_reduce_(&mut t, Reduce::Sum).unwrap();
    assert_eq!(values(&t), vec![10.0 * w * (w - 1.0) / 2.0; 2]);
    // A non-contiguous view is reduced and written back in place.
    let base = Tensor::arange(6, (Kind::Float, Device::Cpu)).view([2, 3]);
    let mut view = base.tr();
    group.all_reduce_(&mut view, Reduce::Sum).unwrap();
    assert_eq!(
        values(&base),
        (0..6).map(|i| f64::from(i) * w).collect::<Vec<_>>()
    );

    // The last rank's values everywhere.
    let mut t = Tensor::arange(5, (Kind::Float, Device::Cpu)) + 100.0 * r;
    group.broadcast_(&mut t, world - 1).unwrap();
    let root = 100.0 * (w - 1.0);
    assert_eq!(
        values(&t),
        (0..5).map(|i| f64::from(i) + root).collect::<Vec<_>>()
    );

    // Rows of every rank in rank order.
    let mine = Tensor::full([2, 3], r, (Kind::Float, Device::Cpu));
    let all = group.all_gather(&mine).unwrap();
    assert_eq!(all.size(), [2 * world as i64, 3]);
    for k in 0..world {
        let rows = all.narrow(0, 2 * k as i64, 2);
        assert_eq!(values(&rows), vec![k as f64; 6], "rank {k}'s rows");
    }

    // Rank 0 arrives late; the others wait for it.
    if rank == 0 {
        std::thread::sleep(Duration::from_millis(500));
    }
    let started = Instant::now();
    group.barrier().unwrap();
    if rank != 0 {
        assert!(
            started.elapsed() >= Duration::from_millis(400),
            "{:?}",
            started.elapsed()
        );
    }

    // Shapes that differ are refused on every rank, naming them all, and the group goes on.
    let uneven = Tensor::zeros([rank as i64 + 1, 3], (Kind::Float, Device::Cpu));
    match group.all_gather(&uneven) {
        Err(Error::DistShapes { message }) => {
            assert!(
                message.contains("rank 0 Float[1, 3]") && message.contains("rank 1 Float[2, 3]"),
                "{message}"
            );
        }
        other => panic!("expected DistShapes, got {other:?}"),
    }
    let mut t = Tensor::ones([1], (Kind::Float, Device::Cpu));
    group.all_reduce_(&mut t, Reduce::Sum).unwrap();
    assert_eq!(values(&t), [w]);
    assert!(group.failure().is_none());
}

/// Rank `k`'s rows of the gradient test: distinct, deterministic, `f64`.
fn rows_of(k: usize) -> Tensor {
    (Tensor::arange(12, (Kind::Double, Device::Cpu)).view([4, 3]) + 10.0 * k as f64) / 7.0
}

/// An InfoNCE-like loss of `queries` (`[B, D]`, rows `offset..offset + B` of `keys`)
/// against every key: each query's own key is its positive.
fn loss(queries: &Tensor, keys: &Tensor, offset: usize) -> Tensor {
    let q = queries / queries.norm_scalaropt_dim(2.0, [1], true);
    let k = keys / keys.norm_scalaropt_dim(2.0, [1], true);
    let logits = q.matmul(&k.tr()) / 0.5;
    let targets = Tensor::arange_start(
        offset as i64,
        (offset + queries.size()[0] as usize) as i64,
        (Kind::Int64, Device::Cpu),
    );
    logits.cross_entropy_for_logits(&targets) + (keys.sum(Kind::Double) * 0.01)
}

fn worker_gradients() {
    let group = ProcessGroup::from_env(&options(20_000)).unwrap();
    let (rank, world) = (group.rank(), group.world_size());
    let rows = rows_of(rank).set_requires_grad(true);
    let keys = group.all_gather_with_grad(&rows).unwrap();
    assert!(keys.requires_grad(), "the gather is in the graph");
    loss(&rows, &keys, 4 * rank).backward();
    let distributed = rows.grad();

    // The same losses in one process: every rank's queries against all keys, summed.
    let all = Tensor::cat(&(0..world).map(rows_of).collect::<Vec<_>>(), 0).set_requires_grad(true);
    let total = (0..world)
        .map(|k| loss(&all.narrow(0, 4 * k as i64, 4), &all, 4 * k))
        .reduce(|a, b| a + b)
        .unwrap();
    total.backward();
    let single = all.grad().narrow(0, 4 * rank as i64, 4);
    let difference = (&distributed - &single).abs().max().double_value(&[]);
    let scale = single.abs().max().double_value(&[]);
    assert!(
        difference <= 1e-12 * scale.max(1.0),
        "gradients differ by {difference} (scale {scale})"
    );
    assert!(scale > 0.0);

    // Without grad, the gather is outside the graph.
    let plain = group.all_gather_with_grad(&rows_of(rank)).unwrap();
    assert!(!plain.requires_grad());
}

/// A two-layer network's weights drawn from `seed` (`f64`).
fn weights(seed: i64) -> [Tensor; 3] {
    contrastive_tensor::seed_all(seed as u64);
    let cpu = (Kind::Double, Device::Cpu);
    [
        Tensor::randn([5, 3], cpu).set_requires_grad(true),
        Tensor::randn([5], cpu).set_requires_grad(true),
        Tensor::randn([2, 5], cpu).set_requires_grad(true),
    ]
}

/// The mean loss of the network on `inputs`.
fn network_loss(w: &[Tensor; 3], inputs: &Tensor) -> Tensor {
    let hidden = (inputs.matmul(&w[0].tr()) + &w[1]).tanh();
    hidden.matmul(&w[2].tr()).square().mean(Kind::Double)
}

/// The whole batch: 4 rows per rank.
fn batch(world: usize) -> Tensor {
    let n = 4 * world as i64;
    (Tensor::arange(n * 3, (Kind::Double, Device::Cpu)).view([n, 3]) / 11.0).sin()
}

fn worker_data_parallel() {
    let group = ProcessGroup::from_env(&options(20_000)).unwrap();
    let (rank, world) = (group.rank(), group.world_size());
    // Every rank draws other weights; rank 0's win.
    let w = weights(100 + rank as i64);
    group.broadcast_parameters(&w).unwrap();
    let reference = weights(100);
    for (mine, theirs) in w.iter().zip(&reference) {
        assert!(mine.equal(theirs), "rank 0's weights everywhere");
    }
    // Each rank its own quarter of the batch; gradients averaged in small buckets.
    let inputs = batch(world).narrow(0, 4 * rank as i64, 4);
    network_loss(&w, &inputs).backward();
    group.average_gradients(&w, 64).unwrap();
    // One process, the whole batch.
    network_loss(&reference, &batch(world)).backward();
    for (i, (mine, one)) in w.iter().zip(&reference).enumerate() {
        let difference = (mine.grad() - one.grad()).abs().max().double_value(&[]);
        assert!(
            difference < 1e-14,
            "weight {i}: gradients differ by {difference}"
        );
    }
    // A gradient on one rank only is refused on all of them, and nothing is changed.
    let extra = Tensor::ones([2], (Kind::Double, Device::Cpu)).set_requires_grad(true);
    if rank == 0 {
        extra.sum(Kind::Double).backward();
    }
    let before = w[0].grad().copy();
    let err = group
        .average_gradients(&[w[0].shallow_clone(), extra], 64)
        .unwrap_err();
    assert!(err.to_string().contains("has a gradient on 1 of"), "{err}");
    assert!(w[0].grad().equal(&before));
}

fn worker_alone() {
    let started = Instant::now();
    let err = ProcessGroup::from_env(&options(2_000)).unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(
            err,
            Error::DistInit {
                rank: 0,
                world_size: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        elapsed < Duration::from_secs(30),
        "gave up after {elapsed:?}"
    );
    let text = err.to_string();
    assert!(text.contains("127.0.0.1:"), "names the store: {text}");
    println!("ALONE-OK after {elapsed:?}: {text}");
}

fn worker_dies(victim: usize) {
    let group = ProcessGroup::from_env(&options(3_000)).unwrap();
    group.barrier().unwrap();
    if group.rank() == victim {
        println!("READY");
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    // The others go on until the lost peer makes a collective fail.
    let started = Instant::now();
    let err = loop {
        let mut t = Tensor::ones([1024], (Kind::Float, Device::Cpu));
        if let Err(e) = group.all_reduce_(&mut t, Reduce::Sum) {
            break e;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no failure after 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    match &err {
        Error::DistCollective { failure, .. } => {
            assert!(
                matches!(failure, DistFailure::PeerLost | DistFailure::Timeout),
                "{err}"
            );
        }
        other => panic!("expected DistCollective, got {other:?}"),
    }
    // From now on every call fails at once, naming the first failure.
    let again = group.barrier().unwrap_err();
    assert!(matches!(again, Error::DistGroupFailed { .. }), "{again:?}");
    assert!(group.failure().is_some());
    println!("SURVIVOR-OK after {:?}: {err}", started.elapsed());
}
