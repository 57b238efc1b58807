//! `cargo xtask test`: the one command CI and developers run, and `--repeat N`, which runs
//! the numeric test binaries in N rounds (optionally under load) to catch flaky tests
//! before CI does.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{libtorch, run_command};

/// The crates whose test binaries `--repeat` runs unless `--package` names others: every
/// library crate with numeric tests. The trainer, CLI and end-to-end tests train networks
/// (minutes per run) and are left to the ordinary test command.
pub const NUMERIC_CRATES: [&str; 7] = [
    "contrastive-tensor",
    "contrastive-data",
    "contrastive-augment",
    "contrastive-samplers",
    "contrastive-losses",
    "contrastive-models",
    "contrastive-retrieval",
];

/// What `--repeat` runs, and how.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Run the numeric test binaries in this many rounds, each binary once a round (no fmt,
    /// clippy or doc tests), and report every failing run; the test command when absent.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: Option<u32>,
    /// With --repeat: the packages whose test binaries to run (repeatable); by default the
    /// library crates with numeric tests.
    #[arg(long = "package", short = 'p', requires = "repeat")]
    pub packages: Vec<String>,
    /// With --repeat: keep every core busy with a spinning thread while the tests run, as a
    /// loaded CI machine would.
    #[arg(long, requires = "repeat")]
    pub load: bool,
    /// Only the check that a new Cargo project outside the workspace builds on our crates
    /// with `cargo xtask setup --cargo-config` and runs (the test command runs it last).
    #[arg(long, conflicts_with = "repeat")]
    pub outside: bool,
    /// Extra arguments passed to `cargo test` (after `--`, e.g. a test name filter); with
    /// --repeat, to each test binary (those without the libtest harness ignore them).
    #[arg(last = true)]
    pub cargo_test_args: Vec<String>,
}

/// Sets up libtorch if needed, then checks formatting, lints and runs every test; or, with
/// `--repeat`, runs the numeric test binaries that many times.
pub fn run(root: &Path, options: &Options) -> Result<()> {
    let start = Instant::now();
    libtorch::setup(root)?;
    crate::postgres::setup(root)?;
    if let Some(times) = options.repeat {
        return repeat(root, options, times);
    }
    if options.outside {
        return crate::outside::check(root);
    }
    crate::layering::check(root)?;
    crate::module_cycles::check(root)?;
    run_command(root, "cargo", &["fmt", "--all", "--check"])?;
    run_command(
        root,
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    let mut args = vec!["test", "--workspace"];
    if !options.cargo_test_args.is_empty() {
        args.push("--");
        args.extend(options.cargo_test_args.iter().map(String::as_str));
    }
    run_command(root, "cargo", &args)?;
    if options.cargo_test_args.is_empty() {
        crate::outside::check(root)?;
    }
    println!("xtask test: all checks passed in {:.0?}", start.elapsed());
    Ok(())
}

/// One test binary that cargo built: where it is and the folder cargo runs it from.
struct TestBinary {
    path: PathBuf,
    package_dir: PathBuf,
}

impl TestBinary {
    fn name(&self) -> String {
        self.path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    }
}

/// Builds the test binaries of `options.packages` (or [`NUMERIC_CRATES`]) and runs them in
/// `times` rounds, each from the folder `cargo test` would run it from.
fn repeat(root: &Path, options: &Options, times: u32) -> Result<()> {
    let packages: Vec<&str> = if options.packages.is_empty() {
        NUMERIC_CRATES.to_vec()
    } else {
        options.packages.iter().map(String::as_str).collect()
    };
    let binaries = build_test_binaries(root, &packages)?;
    let load = options.load.then(Load::start);
    let start = Instant::now();
    let (mut passed, mut failed) = (0u32, 0u32);
    let mut seconds = vec![0f64; binaries.len()];
    for round in 1..=times {
        for (binary, seconds) in binaries.iter().zip(&mut seconds) {
            let began = Instant::now();
            let output = Command::new(&binary.path)
                .args(&options.cargo_test_args)
                .current_dir(&binary.package_dir)
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("could not start {}", binary.path.display()))?;
            *seconds += began.elapsed().as_secs_f64();
            if output.status.success() {
                passed += 1;
            } else {
                failed += 1;
                println!(
                    "round {round}: {} failed ({}):\n{}{}",
                    binary.name(),
                    output.status,
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
        println!(
            "round {round}/{times}: {} binaries, {failed} failures so far ({:.0?})",
            binaries.len(),
            start.elapsed()
        );
    }
    drop(load);
    let mut slowest: Vec<_> = binaries.iter().zip(&seconds).collect();
    slowest.sort_by(|a, b| b.1.total_cmp(a.1));
    for (binary, seconds) in slowest.iter().take(5) {
        println!(
            "  {:>7.1} s per run  {}",
            *seconds / f64::from(times),
            binary.name()
        );
    }
    println!(
        "xtask test --repeat {times}{}: {} test binaries of {}",
        if options.load { " --load" } else { "" },
        binaries.len(),
        packages.join(", ")
    );
    println!("binary runs: {passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} of {} binary runs failed", passed + failed);
    }
    Ok(())
}

/// `cargo test --no-run` for `packages`, reading the built test executables from cargo's
/// JSON messages.
fn build_test_binaries(root: &Path, packages: &[&str]) -> Result<Vec<TestBinary>> {
    let mut args = vec![
        "test",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ];
    for package in packages {
        args.extend(["--package", package]);
    }
    println!("$ cargo {}", args.join(" "));
    let output = Command::new("cargo")
        .args(&args)
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .context("could not start `cargo test --no-run`")?;
    if !output.status.success() {
        bail!("`cargo {}` failed ({})", args.join(" "), output.status);
    }
    let mut binaries = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(executable), Some(manifest)) = (
            message["executable"].as_str(),
            message["manifest_path"].as_str(),
        ) else {
            continue;
        };
        if message["profile"]["test"].as_bool() != Some(true) {
            continue;
        }
        binaries.push(TestBinary {
            path: executable.into(),
            package_dir: Path::new(manifest)
                .parent()
                .context("a manifest path has a folder")?
                .into(),
        });
    }
    if binaries.is_empty() {
        bail!("cargo built no test binary for {}", packages.join(", "));
    }
    Ok(binaries)
}

/// One spinning thread per core until dropped.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let cores = thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..cores)
            .map(|_| {
                let stop = Arc::clone(&stop);
                thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        println!("load: {cores} spinning threads");
        Self { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
