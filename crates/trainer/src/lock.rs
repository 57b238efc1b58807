//! One process per run directory: an advisory lock on `<run>/.lock`, held while a
//! [`Trainer`](crate::Trainer) lives, with the holder's pid written inside for the message
//! a second process gets.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The lock of a run directory; released when dropped (or when the process dies, whatever
/// kills it: the operating system drops `flock` locks with the file descriptor).
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    // Held for its lock; never read after taking it.
    _file: File,
}

impl RunLock {
    /// Takes the lock of `run_dir` (which must exist), or fails at once with
    /// [`Error::Run`] naming the process that holds it.
    pub fn acquire(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(".lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "another process".to_owned(),
                    pid => format!("process {pid}"),
                };
                return Err(Error::Run(format!(
                    "{} is in use by {holder} (it holds {}); one training per run directory: \
                     wait for it to end, or choose another run.out",
                    run_dir.display(),
                    path.display()
                )));
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(|e| Error::io(&path, e))?;
        Ok(Self { path, _file: file })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_pid_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let pid = std::process::id().to_string();
        assert_eq!(std::fs::read_to_string(first.path()).unwrap().trim(), pid);
        // flock locks belong to the open file, so a second open in this process conflicts
        // as one in another process would (the CLI tests check two processes).
        let err = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains(&format!("process {pid}")), "{err}");
        drop(first);
        RunLock::acquire(dir.path()).unwrap();
    }
}
