//! Data-parallel training across real processes: this test binary starts copies of itself
//! as the ranks of a Gloo group on 127.0.0.1 (with torchrun's variables) and checks that
//! SimCLR, SupCon, MoCo v2 (its keys dealt out across ranks or not), triplet, pairs, BYOL,
//! Barlow Twins, VICReg and NNCLR at 2 ranks x batch B compute what one process with batch
//! 2B does, with `model.sync_bn`: the
//! same loss at every step and the same parameters (and MoCo queue) after the run, to a
//! stated float tolerance. Its own binary without the test
//! harness, so that each rank is a plain process and a hung one is killed, not waited for.

// The orchestrator reports each case on stdout.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use contrastive_e2e::{finish, free_port, write_shapes};
use contrastive_tensor::dist::{InitOptions, ProcessGroup};
use contrastive_tensor::{Kind, SafetensorsFile};
use contrastive_trainer::{Record, TrainConfig, Trainer, checkpoint_path, read_metrics};

const WORKER: &str = "CONTRASTIVE_DP_WORKER";
/// Set: each rank keeps its own batch-norm statistics.
const LOCAL_BN: &str = "CONTRASTIVE_DP_LOCAL_BN";
/// Set: MoCo's keys are not dealt out across ranks.
const UNSHUFFLED: &str = "CONTRASTIVE_DP_UNSHUFFLED";
const WATCHDOG: Duration = Duration::from_secs(300);
/// Steps each run takes.
const STEPS: usize = 4;
const METHODS: [(&str, &str); 12] = [
    ("simclr", "name = \"simclr\"\ntemperature = 0.5"),
    ("supcon", "name = \"supcon\"\ntemperature = 0.5"),
    (
        "moco-v2",
        "name = \"moco-v2\"\nqueue_size = 32\nmomentum = 0.9\ntemperature = 0.2",
    ),
    // The keys dealt out across ranks and gathered back into place (the same sums with
    // global batch-norm statistics).
    (
        "moco-v2-shuffled",
        "name = \"moco-v2\"\nqueue_size = 32\nmomentum = 0.9\ntemperature = 0.2\nshuffle_bn = true",
    ),
    // Labeled P x K batches: every anchor mines over the gathered global batch.
    (
        "triplet",
        "name = \"triplet\"\nmining = \"batch-all\"\nper_class = 4",
    ),
    ("pairs", "name = \"pairs\"\nmargin = 0.5\nper_class = 4"),
    // Without negatives: statistics over the global batch, a target network, a predictor,
    // a support set queued with every rank's embeddings.
    ("byol", "name = \"byol\"\nmomentum = 0.9"),
    ("simsiam", "name = \"simsiam\""),
    ("barlow-twins", "name = \"barlow-twins\""),
    // VICReg's weights scaled by 1/25 (its default 25, 25, 1 with lr 0.01 amplifies
    // rounding past what the test can tell from an error within 4 steps).
    (
        "vicreg",
        "name = \"vicreg\"\nlambda = 1.0\nmu = 1.0\nnu = 0.04",
    ),
    ("nnclr", "name = \"nnclr\"\nsupport_size = 32"),
    ("hypersphere", "name = \"hypersphere\""),
];

fn main() {
    if let Ok(method) = std::env::var(WORKER) {
        let dir = PathBuf::from(std::env::var("CONTRASTIVE_DP_DIR").unwrap());
        let out = std::env::var_os("CONTRASTIVE_DP_SINGLE")
            .map_or_else(|| dir.join("ranks"), PathBuf::from);
        train(&dir, &method, &out);
        return;
    }
    let mut failed = Vec::new();
    for (method, _) in METHODS {
        match compare(method) {
            Ok(summary) => println!("data-parallel {method}: ok ({summary})"),
            Err(why) => {
                println!("data-parallel {method}: FAILED\n{why}");
                failed.push(method);
            }
        }
    }
    assert!(failed.is_empty(), "failed: {failed:?}");
}

/// The run of `method` on the shapes under `dir` into `out`, as this process's rank (one
/// process when no launcher variables are set).
fn train(dir: &Path, method: &str, out: &Path) {
    let mut lines = METHODS
        .iter()
        .find(|(m, _)| *m == method)
        .unwrap()
        .1
        .to_owned();
    if std::env::var_os(UNSHUFFLED).is_some() {
        lines = lines.replace("shuffle_bn = true", "shuffle_bn = false");
    }
    let text = format!(
        r#"
        [run]
        out = {out:?}
        seed = 11
        threads = {threads}
        max_steps = {STEPS}
        epochs = 2
        precision = "fp32"
        channels_last = "off"
        [data]
        dataset = "folder"
        dir = {train:?}
        batch_size = 16
        augment = "simclr"
        [model]
        head_hidden = 32
        head_out = 16
        sync_bn = {sync_bn}
        [eval]
        final = false
        every_epochs = 0
        [method]
        {lines}
        [optimizer]
        name = "sgd"
        lr = 0.01
        "#,
        out = out.display().to_string(),
        train = dir.join("train").display().to_string(),
        threads = std::env::var("CONTRASTIVE_DP_THREADS").unwrap_or_else(|_| "1".into()),
        sync_bn = std::env::var_os(LOCAL_BN).is_none(),
    );
    let config = TrainConfig::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let options = InitOptions {
        timeout: Duration::from_secs(60),
        ..InitOptions::default()
    };
    let group = ProcessGroup::from_env(&options).unwrap();
    let rank = group.rank();
    let mut trainer = Trainer::new_in(config, false, group).unwrap();
    trainer.run(&mut (), &AtomicBool::new(false)).unwrap();
    // Every rank holds the same parameters: each prints a digest of them.
    let mut named: Vec<(String, contrastive_tensor::Tensor)> =
        trainer.var_store().variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let digest: f64 = named
        .iter()
        .enumerate()
        .map(|(i, (_, t))| {
            let weights =
                contrastive_tensor::Tensor::arange(t.numel() as i64, (Kind::Double, t.device()));
            (t.to_kind(Kind::Double).flatten(0, -1) * (weights + i as f64 + 1.0).sin())
                .sum(Kind::Double)
                .double_value(&[])
        })
        .sum();
    println!("DIGEST {rank} {digest:.17e}");
}

/// Runs `method` on one process and on two, and compares them; the differences allowed are
/// set by how far one process's run moves when only its thread count changes (the same
/// arithmetic in another order).
fn compare(method: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    write_shapes(&dir.path().join("train"), 16, 16, 3);
    let (single, reordered) = (dir.path().join("single"), dir.path().join("reordered"));
    let started = Instant::now();
    finish(vec![spawn(method, dir.path(), None, &single, 1)], WATCHDOG)?;
    let single_s = started.elapsed().as_secs_f64();
    finish(
        vec![spawn(method, dir.path(), None, &reordered, 2)],
        WATCHDOG,
    )?;
    let started = Instant::now();
    let ranks = finish(ranks_of(method, dir.path(), &single, &[]), WATCHDOG)?;
    let parallel_s = started.elapsed().as_secs_f64();
    let digests: Vec<&str> = ranks.iter().filter_map(|o| digest(o)).collect();
    if digests.len() != 2 || digests[0] != digests[1] {
        return Err(format!("the ranks' parameters differ: {digests:?}"));
    }
    let parallel = dir.path().join("ranks");
    let floor = step_differences(&single, &reordered)?;
    let found = step_differences(&single, &parallel)?;
    let (tensor, floor_tensor) = (
        checkpoint_difference(&single, &parallel)?,
        checkpoint_difference(&single, &reordered)?,
    );
    let summary = format!(
        "2 ranks vs 1: step losses off by {}, checkpoint tensors within {:.1e} ({}); 1 \
         process at 2 threads vs 1: {}, {:.1e}; {single_s:.1} s alone, {parallel_s:.1} s on \
         2 ranks",
        short(&found),
        tensor.0,
        tensor.1,
        short(&floor),
        floor_tensor.0
    );
    // Each step within ten times what reordering the arithmetic alone moved it by then
    // (the largest floor so far; at least 1e-6): tight at the first steps, where the runs
    // have not yet drifted apart.
    let mut so_far = 0.0f64;
    if found.iter().zip(&floor).any(|(d, f)| {
        so_far = so_far.max(*f);
        *d > (10.0 * so_far).max(1e-6)
    }) {
        return Err(format!("beyond ten times the rounding floor: {summary}"));
    }
    // The check can fail: with each rank's own batch-norm statistics the first step's loss
    // already differs.
    let local = dir.path().join("local-bn");
    let _ = std::fs::remove_dir_all(&parallel);
    finish(ranks_of(method, dir.path(), &single, &[LOCAL_BN]), WATCHDOG)?;
    std::fs::rename(&parallel, &local).map_err(|e| e.to_string())?;
    let local_bn = step_differences(&single, &local)?;
    if local_bn[0] <= (10.0 * floor[0]).max(1e-6) {
        return Err(format!(
            "local batch-norm matched too: {}; {summary}",
            short(&local_bn)
        ));
    }
    if method == "moco-v2-shuffled" {
        // With each rank's own statistics, dealing the keys out changes them at once.
        finish(
            ranks_of(method, dir.path(), &single, &[LOCAL_BN, UNSHUFFLED]),
            WATCHDOG,
        )?;
        let unshuffled = step_differences(&local, &parallel)?;
        if unshuffled[0] <= (10.0 * floor[0]).max(1e-6) {
            return Err(format!(
                "shuffled and unshuffled keys gave the same first loss: {}",
                short(&unshuffled)
            ));
        }
    }
    Ok(format!(
        "{summary}; local batch-norm: first step off by {:.1e}",
        local_bn[0]
    ))
}

/// Two ranks of `method`, with the variables `set` ([`LOCAL_BN`], [`UNSHUFFLED`]).
fn ranks_of(method: &str, dir: &Path, single: &Path, set: &[&str]) -> Vec<Child> {
    let port = free_port();
    (0..2)
        .map(|rank| {
            let mut child = spawn_command(method, dir, Some((rank, port)), single, 1);
            for name in set {
                child.env(name, "1");
            }
            child.spawn().unwrap()
        })
        .collect()
}

/// Numbers in short scientific notation.
fn short(values: &[f64]) -> String {
    let parts: Vec<String> = values.iter().map(|v| format!("{v:.1e}")).collect();
    format!("[{}]", parts.join(", "))
}

/// The relative difference of each step's loss in two runs.
fn step_differences(a: &Path, b: &Path) -> Result<Vec<f64>, String> {
    let losses = |run: &Path| -> Result<Vec<f64>, String> {
        Ok(read_metrics(&run.join("metrics.jsonl"))
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter_map(|r| match r {
                Record::Step { loss, .. } => Some(loss),
                Record::Epoch { .. } => None,
            })
            .collect())
    };
    let (la, lb) = (losses(a)?, losses(b)?);
    if la.len() != STEPS || lb.len() != STEPS {
        return Err(format!("{} and {} steps logged", la.len(), lb.len()));
    }
    Ok(la
        .iter()
        .zip(&lb)
        .map(|(x, y)| (x - y).abs() / x.abs().max(1e-6))
        .collect())
}

/// The largest difference between two runs' checkpoint tensors (model, optimizer state,
/// MoCo's key encoder and queue), each relative to its tensor's largest entry, and where.
fn checkpoint_difference(a: &Path, b: &Path) -> Result<(f64, String), String> {
    let read = |run: &Path| SafetensorsFile::read(checkpoint_path(run)).map_err(|e| e.to_string());
    let (ca, cb) = (read(a)?, read(b)?);
    if ca.tensors.keys().ne(cb.tensors.keys()) {
        return Err("the checkpoints hold different tensors".into());
    }
    let mut worst = (0.0, String::new());
    for (name, x) in &ca.tensors {
        let (x, y) = (
            x.to_kind(Kind::Double),
            cb.tensors[name].to_kind(Kind::Double),
        );
        let scale = x.abs().max().double_value(&[]).max(1e-12);
        let difference = (&x - &y).abs().max().double_value(&[]) / scale;
        if difference > worst.0 {
            worst = (difference, name.clone());
        }
    }
    Ok(worst)
}

fn digest(output: &str) -> Option<&str> {
    output.lines().find_map(|l| {
        l.strip_prefix("DIGEST ")
            .and_then(|d| d.split_once(' '))
            .map(|d| d.1)
    })
}

/// A worker training `method` on `threads` threads: alone into `single`, or as
/// `(rank, port)` of 2.
fn spawn(
    method: &str,
    dir: &Path,
    rank: Option<(usize, u16)>,
    single: &Path,
    threads: usize,
) -> Child {
    spawn_command(method, dir, rank, single, threads)
        .spawn()
        .unwrap()
}

/// The command of [`spawn`].
fn spawn_command(
    method: &str,
    dir: &Path,
    rank: Option<(usize, u16)>,
    single: &Path,
    threads: usize,
) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .env(WORKER, method)
        .env("CONTRASTIVE_DP_THREADS", threads.to_string())
        .env("CONTRASTIVE_DP_DIR", dir)
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match rank {
        Some((rank, port)) => {
            command
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", "2")
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string());
        }
        None => {
            // Alone, into `single` rather than the ranks' folder.
            command.env("CONTRASTIVE_DP_SINGLE", single);
        }
    }
    command
}
