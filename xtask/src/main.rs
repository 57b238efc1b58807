//! `cargo xtask`: the project's task runner.
//!
//! - `cargo xtask setup [--cargo-config PROJECT]`: provide libtorch 2.13.0 for tch (see
//!   [`libtorch`]) and PostgreSQL with pgvector for the collection tests (see [`postgres`]);
//!   with `--cargo-config`, the settings a project outside the workspace needs to use our
//!   crates (see [`outside`]);
//! - `cargo xtask download <dataset>`: a verified copy of a standard dataset;
//! - `cargo xtask preview`: a PNG grid of augmented views for a preset;
//! - `cargo xtask train [--config FILE] [overrides]`: setup, download, release build and a
//!   training run (default `configs/fmnist-simclr.toml`);
//! - `cargo xtask eval RUN_DIR`: the whole evaluation of a run as a markdown report with
//!   pictures (`RUN_DIR/evaluation/report.md`);
//! - `cargo xtask bench [--peers] [--full]`: the benchmarks, side by side with the Python
//!   peers, written into `docs/benchmarks.md`;
//! - `cargo xtask postgres [--port 5433] [--data DIR]`: PostgreSQL with pgvector on
//!   127.0.0.1 until Ctrl-C;
//! - `cargo xtask test`: formatting, lints and every test of the workspace.
//!
//! xtask never links libtorch, so it builds in seconds on a machine without it.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod download;
mod eval;
mod layering;
mod libtorch;
mod module_cycles;
mod outside;
mod postgres;
mod preview;
mod test;
mod train;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

/// Task runner of the contrastive workspace.
#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Provide libtorch 2.13.0 (reuse one that is present, or install torch from PyPI into a
    /// virtual environment in the cache folder) and link it at `.libtorch`.
    Setup {
        /// Also write PROJECT/.cargo/config.toml, so that a Cargo project outside the
        /// workspace that depends on our crates builds and runs (see the guide's "Using the
        /// crates in your project").
        #[arg(long, value_name = "PROJECT")]
        cargo_config: Option<PathBuf>,
    },
    /// Find a verified copy of a standard dataset (cache, system package) or download it.
    Download {
        /// fashion-mnist, mnist, cifar10, cifar100 or stl10.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(contrastive_data::download::DATASETS))]
        dataset: String,
        /// Data folder (default: $CONTRASTIVE_DATA_DIR, else ~/.cache/contrastive/data).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Write a PNG grid of images and augmented views of them (Fashion-MNIST test images, or
    /// one picture of yours).
    Preview {
        /// Augmentation preset: w1, simclr, simclr-blur, moco-v2, byol (the names of
        /// `data.augment`) or multi-crop (96-pixel views; 48 for multi-crop's local ones).
        #[arg(long, default_value = "w1")]
        preset: String,
        /// A picture to augment instead of Fashion-MNIST images.
        #[arg(long)]
        image: Option<PathBuf>,
        /// How many Fashion-MNIST images (rows).
        #[arg(long, default_value_t = 4)]
        rows: usize,
        /// Views per image (columns after the source).
        #[arg(long, default_value_t = 8)]
        views: usize,
        /// Output PNG.
        #[arg(long, default_value = "preview.png")]
        out: PathBuf,
        /// Data folder for Fashion-MNIST.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Train a model: setup, download, release build, then `contrastive train`.
    Train {
        /// The run config (default configs/fmnist-simclr.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Overrides passed to `contrastive train` (--epochs 1, --out DIR, --set k=v ...).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Evaluate a training run (figures beside the raw-pixel baseline, clusters, map,
    /// searches) into RUN_DIR/evaluation/report.md.
    Eval(eval::Options),
    /// Run the benchmarks (W1-W4, the ceiling, criterion), with --peers beside the Python
    /// peers, and write the report into docs/benchmarks.md.
    Bench(bench::Options),
    /// Run PostgreSQL with pgvector on 127.0.0.1 until Ctrl-C (setting it up when needed),
    /// for `contrastive embed --to` / `search --db` / `serve --db`.
    Postgres {
        /// The port to listen on.
        #[arg(long, default_value_t = 5433)]
        port: u16,
        /// A data folder to keep between runs (initialised when empty); without it the
        /// data is thrown away when the server stops.
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Run `cargo fmt --check`, `cargo clippy -D warnings` and every test of the workspace;
    /// with --repeat N, the numeric test binaries N times each, to catch flaky tests.
    Test(test::Options),
}

fn main() -> Result<()> {
    let root = workspace_root();
    match Cli::parse().command {
        Task::Setup { cargo_config } => {
            libtorch::setup(&root)?;
            // Written before PostgreSQL's setup: the crates need libtorch alone.
            if let Some(project) = cargo_config {
                let path = outside::write_cargo_config(&root, &project)?;
                println!("setup: wrote {}", path.display());
            }
            postgres::setup(&root).map(|_| ())
        }
        Task::Download { dataset, dir } => download::run(&dataset, dir).map(|_| ()),
        Task::Preview {
            preset,
            image,
            rows,
            views,
            out,
            dir,
        } => preview::run(&preset, image.as_deref(), rows, views, &out, dir),
        Task::Train { config, args } => train::run(&root, config, &args),
        Task::Eval(options) => eval::run(&root, &options),
        Task::Bench(options) => bench::run(&root, &options),
        Task::Postgres { port, data } => postgres::run(&root, port, data.as_deref()),
        Task::Test(options) => test::run(&root, &options),
    }
}

/// The workspace root (the folder above `xtask/`).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .into()
}

/// Runs a command in `dir`, echoing it, and fails with its exit status.
fn run_command(dir: &Path, program: &str, args: &[&str]) -> Result<()> {
    println!("$ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .status()
        .with_context(|| format!("could not start `{program}`"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xtask must build before libtorch exists (it is what installs it), so nothing it depends
    /// on may pull in tch.
    #[test]
    fn xtask_does_not_depend_on_libtorch() {
        let out = Command::new(env!("CARGO"))
            .args([
                "tree",
                "--package",
                "xtask",
                "--edges",
                "normal,build",
                "--prefix",
                "none",
            ])
            .current_dir(workspace_root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tree = String::from_utf8_lossy(&out.stdout);
        assert!(
            tree.lines().any(|l| l.starts_with("contrastive-data ")),
            "the tree was read"
        );
        for forbidden in ["tch ", "torch-sys ", "contrastive-tensor "] {
            assert!(
                !tree.lines().any(|l| l.starts_with(forbidden)),
                "xtask depends on {forbidden}"
            );
        }
    }
}
