//! `contrastive`: the command-line tool of the contrastive toolkit.
//!
//! - `contrastive train --config configs/fmnist-simclr.toml [--epochs N ...]` trains a model
//!   into a run directory; `contrastive train --resume RUN_DIR` continues one.
//! - `contrastive eval RUN_DIR` evaluates its model: kNN, linear probe, precision@1, MAP@R,
//!   k-means NMI/ARI/accuracy.
//! - `contrastive embed RUN_DIR` writes an embedding store of the run's training images;
//!   `contrastive search --run RUN_DIR --image q.png -k 8` lists the nearest ones and draws
//!   them (`contrastive index STORE` builds an HNSW index, which `search --index` uses for
//!   large stores); `contrastive cluster --run RUN_DIR` groups them with k-means and draws the groups.
//! - `contrastive embed RUN_DIR --to postgres://USER@HOST:PORT/DB?collection=NAME` fills a
//!   PostgreSQL + pgvector collection incrementally; `search --db URL` queries it;
//!   `contrastive serve --run RUN_DIR [--store S | --index I | --db URL]` answers searches
//!   over HTTP (a JSON API and a web page), the model loaded once.
//! - `contrastive video demo --out DIR` generates the demo video set; `contrastive video
//!   search --run RUN_DIR --image frame.png` answers which video shows the frame and when
//!   (`--clip video.mp4`: which videos are most like a clip).
//! - `contrastive views --config FILE [--set views.rotation=15]` draws the views a run
//!   config makes, to see a change to its `[views]` before training with it.
//! - `contrastive info` reports the libtorch build, the devices and the precision training
//!   would use on them.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cluster;
mod eval;
mod launch;
mod search;
mod serve;
mod train;
mod video;
mod views;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use contrastive_tensor as ct;

/// Contrastive representation learning on images and video, on libtorch.
#[derive(Parser)]
#[command(name = "contrastive", version, about)]
struct Cli {
    /// Print more: -v also what the libraries report as they go (folders opened, files
    /// read), -vv debugging detail. Warnings (skipped files) are printed unless -q.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Print only results and errors: no warnings, no progress bar (`train` prints one line
    /// per epoch instead).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train an embedding network from a TOML config (or resume a run).
    Train(Box<train::TrainArgs>),
    /// Evaluate a trained model on its run's held-out split (kNN, linear probe, retrieval,
    /// k-means).
    Eval(eval::EvalArgs),
    /// Embed a run's training images into an embedding store (.safetensors, optional .npy).
    Embed(search::EmbedArgs),
    /// Build an HNSW index over an embedding store for fast approximate search.
    Index(search::IndexArgs),
    /// The stored images nearest to a query image.
    Search(search::SearchArgs),
    /// Similar-image search as a service: a JSON API and a web page over a store, its index
    /// or a PostgreSQL collection.
    Serve(Box<serve::ServeArgs>),
    /// k-means over an embedding store: a grid of images per cluster and a 2-D map.
    Cluster(cluster::ClusterArgs),
    /// A picture of the views a run config makes (to see a `[views]` change before training).
    Views(views::ViewsArgs),
    /// Video: generate the demo set; search videos by a frame (which video, when) or a clip.
    Video(video::VideoArgs),
    /// Show the libtorch build, the devices and the default precision for a device.
    Info {
        /// Device to check: cpu, cuda, cuda:N, mps or auto.
        #[arg(long, default_value = "auto")]
        device: String,
    },
}

/// Runs the command; an error is printed as one line of causes, without a backtrace
/// whatever `RUST_BACKTRACE` says (panics still print theirs), and exits with status 1.
fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        _ if cli.quiet => tracing::Level::ERROR,
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .without_time()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", causes(&err));
            ExitCode::FAILURE
        }
    }
}

/// `err` and its causes, outermost first, joined by ": "; a cause whose text the message
/// before it already holds (an I/O error its file's message quotes) is said once.
fn causes(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let line = cause.to_string();
        if text.contains(&line) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&line);
    }
    text
}

/// An error unless the folder `path` would be written into exists, so that a command
/// fails before its work rather than after it (`flag` names the option).
pub(crate) fn check_output(flag: &str, path: &std::path::Path) -> Result<()> {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if folder.is_dir() {
        Ok(())
    } else {
        anyhow::bail!(
            "{flag} {}: the folder {} does not exist",
            path.display(),
            folder.display()
        )
    }
}

/// The file name of `path` (the whole path when it has none), as contact sheets caption
/// their tiles.
pub(crate) fn file_name(path: &std::path::Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn run(cli: Cli) -> Result<()> {
    // Large tensors are reused from the heap rather than mapped and faulted in afresh at
    // every step; where the allocator is not glibc's this does nothing, which only costs
    // speed. Not for `serve`: a service lives on while its collection grows, each write's
    // temporaries are a little larger than the last one's, and a heap that never maps nor
    // hands back large blocks then grows with every insert until the kernel kills it (the
    // local HNSW backend of benchmark W6 reached 24 GiB).
    if !matches!(cli.command, Command::Serve(_)) {
        ct::keep_freed_memory();
    }
    match cli.command {
        Command::Train(args) => train::run(*args, cli.quiet),
        Command::Eval(args) => eval::run(args),
        Command::Embed(args) => search::embed(args),
        Command::Index(args) => search::index(args),
        Command::Search(args) => search::search(args),
        Command::Serve(args) => serve::run(*args),
        Command::Cluster(args) => cluster::run(args),
        Command::Views(args) => views::run(args),
        Command::Video(args) => video::run(args),
        Command::Info { device } => info(&device),
    }
}

fn info(spec: &str) -> Result<()> {
    let device = ct::parse_device(spec).with_context(|| format!("checking --device {spec}"))?;
    println!("contrastive {}", env!("CARGO_PKG_VERSION"));
    println!("libtorch     {}", ct::LIBTORCH_VERSION);
    println!("cpu threads  {}", ct::threads());
    println!(
        "cpu bf16     {}",
        if ct::cpu_has_native_bf16() {
            "native"
        } else {
            "emulated"
        }
    );
    println!("cuda devices {}", ct::cuda_device_count());
    println!("device       {}", ct::describe_device(device));
    println!(
        "precision    {} where a config says auto and no run has measured (runs time fp32 \
         and bf16, NCHW and channels-last, and keep the fastest)",
        ct::Precision::fastest_for(device)
    );
    let cached = contrastive_trainer::cached_numerics();
    println!("measured     {} decision(s) cached", cached.len());
    for (path, line) in cached {
        println!("  {line}: {}", path.display());
    }
    Ok(())
}
