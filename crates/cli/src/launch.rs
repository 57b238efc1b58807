//! `contrastive train --nproc-per-node N`: starts N ranks of the same command on this
//! machine, as `torchrun --nproc-per-node N` would (the variables it sets, a store on a free
//! port of 127.0.0.1), and watches them: when one fails or is killed, the others are
//! stopped and the launcher says which rank it was and how it ended.

use std::ffi::OsString;
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// How the launcher's children know they are ranks rather than launchers.
const LAUNCHED: &str = "CONTRASTIVE_LAUNCHED";

/// Whether this process was started by a launcher (ours, torchrun, or SLURM's srun), so it
/// must not launch ranks itself.
pub fn is_rank() -> bool {
    ["RANK", "WORLD_SIZE", "SLURM_STEP_ID", LAUNCHED]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

/// The command line of this process without `--nproc-per-node N` (or `=N`).
fn rank_args() -> Vec<OsString> {
    let mut args = Vec::new();
    let mut skip_value = false;
    for arg in std::env::args_os().skip(1) {
        if skip_value {
            skip_value = false;
            continue;
        }
        match arg.to_str() {
            Some("--nproc-per-node") => skip_value = true,
            Some(a) if a.starts_with("--nproc-per-node=") => {}
            _ => args.push(arg),
        }
    }
    args
}

/// Runs `ranks` copies of this command as one data-parallel job on this machine, each with
/// `threads` libtorch threads, and returns once all have ended; an error names the first
/// rank that failed (the others are then stopped).
pub fn launch(ranks: usize, threads: usize) -> Result<()> {
    if ranks < 2 {
        bail!("--nproc-per-node {ranks}: give 2 or more (1 is a plain run)");
    }
    // The ranks read Ctrl-C themselves (the terminal sends it to all of them) and stop
    // together after the same step; the launcher waits for them to finish.
    let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, std::sync::Arc::clone(&interrupted))
            .context("installing the signal handlers")?;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free port on 127.0.0.1 for the ranks' rendezvous")?
        .port();
    let exe = std::env::current_exe().context("finding this program")?;
    let mut args = rank_args();
    args.extend(["--set".into(), format!("run.threads={threads}").into()]);
    let mut children: Vec<Option<Child>> = Vec::new();
    for rank in 0..ranks {
        let child = Command::new(&exe)
            .args(&args)
            .env(LAUNCHED, "1")
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", ranks.to_string())
            .env("LOCAL_WORLD_SIZE", ranks.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .spawn();
        match child {
            Ok(child) => children.push(Some(child)),
            Err(e) => {
                stop(&mut children);
                return Err(e).context(format!("starting rank {rank}"));
            }
        }
    }
    let mut failures: Vec<(usize, ExitStatus)> = Vec::new();
    while children.iter().any(Option::is_some) {
        for (rank, slot) in children.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            if let Some(status) = child.try_wait().context("waiting for a rank")? {
                *slot = None;
                if !status.success() {
                    failures.push((rank, status));
                }
            }
        }
        if !failures.is_empty() {
            // A rank that dies takes the others' collectives down with it within moments:
            // let them end, so that the one that died first is told apart from them.
            std::thread::sleep(Duration::from_millis(500));
            for (rank, slot) in children.iter_mut().enumerate() {
                if let Some(Ok(Some(status))) = slot.as_mut().map(Child::try_wait) {
                    *slot = None;
                    if !status.success() {
                        failures.push((rank, status));
                    }
                }
            }
            stop(&mut children);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The cause: a rank killed by a signal, else the first to fail.
    let cause = failures
        .iter()
        .find(|(_, status)| {
            use std::os::unix::process::ExitStatusExt;
            status.signal().is_some()
        })
        .or(failures.first());
    match cause {
        None => Ok(()),
        Some((rank, status)) => bail!(
            "rank {rank} of {ranks} {}; the other ranks were stopped",
            describe(*status)
        ),
    }
}

/// Stops every rank still running (SIGTERM, so each saves what it can; SIGKILL after 10 s).
fn stop(children: &mut [Option<Child>]) {
    for child in children.iter().flatten() {
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: kill(2) with a pid this process started and has not yet reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for slot in children.iter_mut() {
        if let Some(child) = slot {
            while std::time::Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        *slot = None;
    }
}

/// How a rank ended, in words.
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (_, Some(signal)) => format!("was killed by signal {signal}"),
        (Some(code), None) => format!("exited with status {code}"),
        (None, None) => "ended".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endings_are_told_in_words() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(describe(ExitStatus::from_raw(9)), "was killed by signal 9");
        assert_eq!(
            describe(ExitStatus::from_raw(3 << 8)),
            "exited with status 3"
        );
    }
}
