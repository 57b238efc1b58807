//! `cargo xtask test`: the one command CI and developers run.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;

use crate::{libtorch, run_command};

/// Sets up libtorch if needed, then checks formatting, lints and runs every test.
pub fn run(root: &Path, cargo_test_args: &[String]) -> Result<()> {
    let start = Instant::now();
    libtorch::setup(root)?;
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
    if !cargo_test_args.is_empty() {
        args.push("--");
        args.extend(cargo_test_args.iter().map(String::as_str));
    }
    run_command(root, "cargo", &args)?;
    println!("xtask test: all checks passed in {:.0?}", start.elapsed());
    Ok(())
}
