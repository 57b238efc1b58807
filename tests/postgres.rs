//! A throwaway PostgreSQL server with pgvector on 127.0.0.1 for tests: the installation
//! `cargo xtask setup` links as `.postgres` (or `$CONTRASTIVE_POSTGRES`), a fresh data folder
//! and a free port, through [`contrastive_pgserver`].

use std::path::{Path, PathBuf};

pub use contrastive_pgserver::LocalPostgres;

/// Starts a throwaway server (dropped, it is killed and its data removed); panics with what
/// to do when PostgreSQL is not installed.
pub fn start_postgres() -> LocalPostgres {
    let linked = std::env::var_os("CONTRASTIVE_POSTGRES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.postgres"));
    let installation =
        contrastive_pgserver::resolve_installation(&linked).unwrap_or_else(|e| panic!("{e}"));
    LocalPostgres::start(&installation, None, crate::free_port())
        .unwrap_or_else(|e| panic!("a throwaway PostgreSQL: {e}"))
}
