//! `contrastive`: the command-line tool of the contrastive toolkit.
//!
//! Today it has one command, `contrastive info`, which reports the libtorch build, the
//! devices this machine offers and the precision training would use on them. Training,
//! embedding, search and clustering commands arrive with their issues (#6, #7, #8).

#![allow(clippy::print_stdout)]

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use contrastive_tensor as ct;

/// Contrastive representation learning on images and video, on libtorch.
#[derive(Parser)]
#[command(name = "contrastive", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the libtorch build, the devices and the default precision for a device.
    Info {
        /// Device to check: cpu, cuda, cuda:N, mps or auto.
        #[arg(long, default_value = "auto")]
        device: String,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
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
    println!("precision    {}", ct::Precision::fastest_for(device));
    Ok(())
}
