//! Data-parallel collectives on PyTorch's own distributed engine (c10d): a TCPStore for the
//! rendezvous and a Gloo process group for CPU tensors, as `torch.distributed` uses them.
//!
//! Launch one process per rank, with `torchrun`, with SLURM's `srun`, or by hand, and call
//! [`ProcessGroup::from_env`] in each; it reads what the launcher set:
//!
//! | launcher | variables read |
//! |---|---|
//! | torchrun (or by hand) | `RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`; `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `TORCHELASTIC_USE_AGENT_STORE`, `TORCHELASTIC_RESTART_COUNT` when set |
//! | SLURM (inside `srun`) | `SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`, `SLURM_NTASKS_PER_NODE` (or the first count of `SLURM_TASKS_PER_NODE`), `SLURM_JOB_ID`; the master is `MASTER_ADDR` or the first host of `SLURM_JOB_NODELIST`, the port `MASTER_PORT` or `29500 + SLURM_JOB_ID % 1000` |
//!
//! Without either, the group is a single process and every collective is the identity, so
//! the same program runs alone unchanged.
//!
//! Gloo carries CPU tensors. CUDA tensors are accepted and travel through a host copy (as
//! `torch.distributed`'s Gloo backend allows); NCCL is not built in, and the CUDA path is
//! unverified on a GPU so far.
//!
//! Every call waits at most the group's timeout ([`InitOptions::timeout`]) for its peers,
//! then fails with an error that says what it waited for and which ranks were lost: every
//! rank raises a counter in the store five times a second, and a rank whose collective
//! failed watches the counters for 1.5 s before it reports, naming the ranks whose counters
//! stood still ("rank 1 of 3 was lost"), or saying that every rank still runs (a timeout
//! of a slow peer), or that the store itself went with rank 0, whatever launched the job. A failed collective (a timeout,
//! a peer that died) leaves the ranks out of step, so the group is then unusable: every
//! later call fails at once with [`Error::DistGroupFailed`], naming the first failure. Drop
//! the group and exit; the launcher restarts the job. Tensors of different shapes on
//! different ranks are refused on every rank alike ([`Error::DistShapes`]) and leave the
//! group usable.
//!
//! ```no_run
//! use contrastive_tensor::dist::{InitOptions, ProcessGroup, Reduce};
//! use contrastive_tensor::{Kind, Tensor};
//!
//! let group = ProcessGroup::from_env(&InitOptions::default())?;
//! let mut gradient = Tensor::ones([4], (Kind::Float, tch::Device::Cpu));
//! group.all_reduce_(&mut gradient, Reduce::Mean)?;
//! // Every rank's embeddings, with gradients flowing back to this rank's rows.
//! let local = Tensor::randn([8, 16], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
//! let global = group.all_gather_with_grad(&local)?;
//! assert_eq!(global.size(), [8 * group.world_size() as i64, 16]);
//! # Ok::<(), contrastive_tensor::Error>(())
//! ```

use std::ffi::{CString, c_int};
use std::fmt;
use std::ptr::NonNull;
use std::time::Duration;

use tch::{Device, Tensor};

use crate::ffi::{self, CtrDistGroup};
use crate::{Error, Result};

/// What started the processes, and so where their ranks were read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// `torchrun`, or variables set by hand (`RANK`, `WORLD_SIZE`, ...).
    Torchrun,
    /// SLURM's `srun`.
    Slurm,
}

/// Where this process sits in a launch: its rank and how to reach the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistEnv {
    /// This process's rank, `0..world_size`.
    pub rank: usize,
    /// Processes in all.
    pub world_size: usize,
    /// This process's rank on its machine.
    pub local_rank: usize,
    /// Processes on this machine.
    pub local_world_size: usize,
    /// The host of the rendezvous store (rank 0's machine).
    pub master_addr: String,
    /// Its port.
    pub master_port: u16,
    /// Whether the launcher's agent hosts the store (torchrun), so that no rank does.
    pub agent_store: bool,
    /// How often the launcher restarted the job (keys of earlier attempts are not read).
    pub restart: u64,
    /// Who set the variables.
    pub launcher: Launcher,
}

impl DistEnv {
    /// The launch this process belongs to, from its environment; `None` when no launcher
    /// set anything (a single process).
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`DistEnv::from_env`] with the variables from `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        if var("RANK").is_some() || var("WORLD_SIZE").is_some() {
            Self::torchrun(&var).map(Some)
        } else if var("SLURM_PROCID").is_some()
            && var("SLURM_NTASKS").is_some()
            && var("SLURM_STEP_ID").is_some()
        {
            Self::slurm(&var).map(Some)
        } else {
            Ok(None)
        }
    }

    fn torchrun(var: &impl Fn(&str) -> Option<String>) -> Result<Self> {
        let missing: Vec<&str> = ["RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"]
            .into_iter()
            .filter(|name| var(name).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(Error::DistEnv {
                var: missing.join(", "),
                message: "not set (torchrun sets them; by hand, set all four)".into(),
            });
        }
        let rank = number(var, "RANK")?;
        let world_size = number(var, "WORLD_SIZE")?;
        let env = Self {
            rank,
            world_size,
            local_rank: optional_number(var, "LOCAL_RANK")?.unwrap_or(rank),
            local_world_size: optional_number(var, "LOCAL_WORLD_SIZE")?.unwrap_or(world_size),
            master_addr: var("MASTER_ADDR").unwrap_or_default(),
            master_port: port(var, "MASTER_PORT")?,
            agent_store: var("TORCHELASTIC_USE_AGENT_STORE").as_deref() == Some("True"),
            restart: optional_number(var, "TORCHELASTIC_RESTART_COUNT")?.unwrap_or(0) as u64,
            launcher: Launcher::Torchrun,
        };
        env.checked()
    }

    fn slurm(var: &impl Fn(&str) -> Option<String>) -> Result<Self> {
        let rank = number(var, "SLURM_PROCID")?;
        let world_size = number(var, "SLURM_NTASKS")?;
        let per_node = match var("SLURM_NTASKS_PER_NODE") {
            Some(_) => optional_number(var, "SLURM_NTASKS_PER_NODE")?,
            None => var("SLURM_TASKS_PER_NODE").and_then(|t| {
                let digits: String = t.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            }),
        };
        let master_addr = match var("MASTER_ADDR") {
            Some(addr) => addr,
            None => var("SLURM_JOB_NODELIST")
                .or_else(|| var("SLURM_NODELIST"))
                .and_then(|list| first_host(&list))
                .ok_or_else(|| Error::DistEnv {
                    var: "SLURM_JOB_NODELIST".into(),
                    message: "not set, and no MASTER_ADDR either".into(),
                })?,
        };
        let master_port = match var("MASTER_PORT") {
            Some(_) => port(var, "MASTER_PORT")?,
            None => {
                let job = optional_number(var, "SLURM_JOB_ID")?.unwrap_or(0);
                29_500 + (job % 1000) as u16
            }
        };
        let env = Self {
            rank,
            world_size,
            local_rank: optional_number(var, "SLURM_LOCALID")?.unwrap_or(0),
            local_world_size: per_node.unwrap_or(1),
            master_addr,
            master_port,
            agent_store: false,
            restart: optional_number(var, "SLURM_RESTART_COUNT")?.unwrap_or(0) as u64,
            launcher: Launcher::Slurm,
        };
        env.checked()
    }

    fn checked(self) -> Result<Self> {
        let bad = |var: &str, message: String| Error::DistEnv {
            var: var.into(),
            message,
        };
        if self.world_size == 0 {
            return Err(bad("WORLD_SIZE", "must be at least 1".into()));
        }
        if self.rank >= self.world_size {
            return Err(bad(
                "RANK",
                format!(
                    "{} is not below the world size {}",
                    self.rank, self.world_size
                ),
            ));
        }
        if self.local_world_size == 0 || self.local_rank >= self.local_world_size {
            return Err(bad(
                "LOCAL_RANK",
                format!(
                    "{} is not below the local world size {}",
                    self.local_rank, self.local_world_size
                ),
            ));
        }
        if self.master_addr.is_empty() {
            return Err(bad("MASTER_ADDR", "is empty".into()));
        }
        Ok(self)
    }
}

fn optional_number(var: &impl Fn(&str) -> Option<String>, name: &str) -> Result<Option<usize>> {
    var(name)
        .map(|text| {
            text.trim().parse::<usize>().map_err(|_| Error::DistEnv {
                var: name.into(),
                message: format!("{text:?} is not a non-negative whole number"),
            })
        })
        .transpose()
}

fn number(var: &impl Fn(&str) -> Option<String>, name: &str) -> Result<usize> {
    optional_number(var, name)?.ok_or_else(|| Error::DistEnv {
        var: name.into(),
        message: "not set".into(),
    })
}

fn port(var: &impl Fn(&str) -> Option<String>, name: &str) -> Result<u16> {
    let value = number(var, name)?;
    u16::try_from(value)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| Error::DistEnv {
            var: name.into(),
            message: format!("{value} is not a port (1 to 65535)"),
        })
}

/// The first host of a SLURM host list: `gpu[03-05,9],cpu1` -> `gpu03`,
/// `r[1-2]-n[01-04]` -> `r1-n01`, `node7` -> `node7`.
fn first_host(list: &str) -> Option<String> {
    let mut host = String::new();
    let mut chars = list.trim().chars();
    while let Some(c) = chars.next() {
        match c {
            ',' => break,
            '[' => {
                // The first number of the range list, zero padding kept.
                let inside: String = chars.by_ref().take_while(|&c| c != ']').collect();
                host.extend(inside.chars().take_while(|c| c.is_ascii_digit()));
            }
            c => host.push(c),
        }
    }
    (!host.is_empty()).then_some(host)
}

/// How a process joins its group.
#[derive(Debug, Clone, PartialEq)]
pub struct InitOptions {
    /// How long any call waits for its peers (joining included) before it fails.
    pub timeout: Duration,
    /// Gloo's worker threads per process.
    pub threads: usize,
    /// The address Gloo binds on this machine: `None` binds the machine's own host name,
    /// or 127.0.0.1 when the master is on this machine's loopback (every rank local).
    pub gloo_hostname: Option<String>,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(300),
            threads: 2,
            gloo_hostname: None,
        }
    }
}

/// How [`ProcessGroup::all_reduce_`] combines the ranks' tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduce {
    /// The sum.
    Sum,
    /// The sum divided by the number of ranks (floating-point tensors).
    Mean,
}

/// What made a collective fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DistFailure {
    /// A peer did not answer within the timeout.
    Timeout,
    /// A peer's connection closed: it died or left.
    PeerLost,
    /// Anything else.
    Other,
}

impl DistFailure {
    /// The kind of failure a c10d or gloo message describes.
    fn of(message: &str) -> Self {
        let lower = message.to_lowercase();
        // The roll call's finding (see `ProcessGroup`) outranks gloo's own words: a rank
        // that waited on a dead one's neighbour times out, yet a peer was lost.
        if lower.contains(" was lost") || lower.contains(" were lost") {
            Self::PeerLost
        } else if lower.contains("timed out") || lower.contains("timeout") {
            Self::Timeout
        } else if [
            "closed by peer",
            "reset by peer",
            "broken pipe",
            "connection refused",
            "end of file",
        ]
        .iter()
        .any(|s| lower.contains(s))
        {
            Self::PeerLost
        } else {
            Self::Other
        }
    }
}

impl fmt::Display for DistFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Timeout => "a peer did not answer in time",
            Self::PeerLost => "a peer was lost",
            Self::Other => "error",
        })
    }
}

/// The processes of one data-parallel job, and the collectives they run together. Every
/// rank must call the same collectives in the same order; the type is `Send` but not
/// `Sync`, so one thread at a time issues them (run backward on the thread that owns it
/// when the graph holds a gather).
pub struct ProcessGroup {
    handle: Option<NonNull<CtrDistGroup>>,
    rank: usize,
    world_size: usize,
    local_rank: usize,
    local_world_size: usize,
}

// SAFETY: the C++ group is reference counted and guarded by its own mutex; the handle is
// only used through `&self` from one thread at a time (`ProcessGroup` is not `Sync`).
unsafe impl Send for ProcessGroup {}

impl fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("rank", &self.rank)
            .field("world_size", &self.world_size)
            .field("local_rank", &self.local_rank)
            .finish_non_exhaustive()
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            // SAFETY: the handle came from `ctr_dist_init` and is freed once, here.
            unsafe { ffi::ctr_dist_free(handle.as_ptr()) }
        }
    }
}

impl ProcessGroup {
    /// A group of this process alone: every collective is the identity.
    pub fn single() -> Self {
        Self {
            handle: None,
            rank: 0,
            world_size: 1,
            local_rank: 0,
            local_world_size: 1,
        }
    }

    /// The group the launcher started this process in ([`DistEnv::from_env`]), or
    /// [`ProcessGroup::single`] when there is none or it has one process.
    pub fn from_env(options: &InitOptions) -> Result<Self> {
        match DistEnv::from_env()? {
            Some(env) if env.world_size > 1 => Self::init(&env, options),
            _ => Ok(Self::single()),
        }
    }

    /// Joins the group `env` describes: rank 0 hosts the rendezvous store (unless the
    /// launcher's agent does), every rank connects to it and then to every other rank.
    /// Fails when a peer has not arrived within `options.timeout`.
    pub fn init(env: &DistEnv, options: &InitOptions) -> Result<Self> {
        let master = format!("{}:{}", env.master_addr, env.master_port);
        let init_error = |message: String| Error::DistInit {
            rank: env.rank,
            world_size: env.world_size,
            master: master.clone(),
            message,
        };
        let text = |s: &str| CString::new(s).map_err(|_| init_error(format!("{s:?} holds NUL")));
        let loopback = env.master_addr == "localhost" || env.master_addr.starts_with("127.");
        let hostname = match &options.gloo_hostname {
            Some(name) => name.clone(),
            None if loopback => "127.0.0.1".to_owned(),
            None => String::new(),
        };
        let (host, prefix, hostname) = (
            text(&env.master_addr)?,
            text(&format!("contrastive/{}", env.restart))?,
            text(&hostname)?,
        );
        let timeout_ms = i64::try_from(options.timeout.as_millis()).unwrap_or(i64::MAX);
        let mut handle = std::ptr::null_mut();
        // SAFETY: the strings live across the call; on success the shim writes an owned
        // group handle into `handle`, freed in `Drop`.
        let code = unsafe {
            ffi::ctr_dist_init(
                host.as_ptr(),
                c_int::from(env.master_port),
                c_int::try_from(env.rank).unwrap_or(c_int::MAX),
                c_int::try_from(env.world_size).unwrap_or(c_int::MAX),
                c_int::from(env.rank == 0 && !env.agent_store),
                c_int::from(env.agent_store),
                prefix.as_ptr(),
                hostname.as_ptr(),
                timeout_ms,
                c_int::try_from(options.threads.max(1)).unwrap_or(c_int::MAX),
                &mut handle,
            )
        };
        if code < 0 {
            return Err(init_error(ffi::last_message()));
        }
        Ok(Self {
            handle: NonNull::new(handle),
            rank: env.rank,
            world_size: env.world_size,
            local_rank: env.local_rank,
            local_world_size: env.local_world_size,
        })
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Processes in the group.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// This process's rank on its machine (which device it should use).
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    /// Processes on this machine.
    pub fn local_world_size(&self) -> usize {
        self.local_world_size
    }

    /// Whether this is rank 0, the one that writes files and prints.
    pub fn is_main(&self) -> bool {
        self.rank == 0
    }

    /// Combines `tensor` over all ranks in place: afterwards every rank holds the sum (or
    /// mean) of every rank's values.
    pub fn all_reduce_(&self, tensor: &mut Tensor, reduce: Reduce) -> Result<()> {
        let op = "all_reduce";
        self.check_device(op, tensor)?;
        if reduce == Reduce::Mean && !tensor.is_floating_point() {
            return Err(Error::DistUnsupported {
                op,
                reason: format!("a mean of {:?} tensors", tensor.kind()),
            });
        }
        let Some(handle) = self.handle else {
            return Ok(());
        };
        // SAFETY: `handle` is live; the shim writes into `tensor` in place.
        let code = unsafe {
            ffi::ctr_dist_allreduce(
                handle.as_ptr(),
                tensor.as_mut_ptr(),
                c_int::from(reduce == Reduce::Mean),
            )
        };
        self.check(op, code)
    }

    /// Overwrites `tensor` on every rank with rank `root`'s.
    pub fn broadcast_(&self, tensor: &mut Tensor, root: usize) -> Result<()> {
        let op = "broadcast";
        self.check_device(op, tensor)?;
        if root >= self.world_size {
            return Err(Error::DistUnsupported {
                op,
                reason: format!("root {root} in a group of {}", self.world_size),
            });
        }
        let Some(handle) = self.handle else {
            return Ok(());
        };
        // SAFETY: `handle` is live; the shim writes into `tensor` in place.
        let code = unsafe {
            ffi::ctr_dist_broadcast(
                handle.as_ptr(),
                tensor.as_mut_ptr(),
                c_int::try_from(root).unwrap_or(0),
            )
        };
        self.check(op, code)
    }

    /// Every rank's `tensor` (the same shape and kind on all ranks) concatenated along
    /// dimension 0 in rank order, without gradient.
    pub fn all_gather(&self, tensor: &Tensor) -> Result<Tensor> {
        self.gather("all_gather", tensor, false)
    }

    /// [`ProcessGroup::all_gather`] that keeps gradients: backward sums the gradient of
    /// the gathered tensor over all ranks and gives `tensor` its own rows of that sum, the
    /// exact gradient of the sum of every rank's loss (a global batch's negatives, as
    /// lightly and solo-learn gather them). Every rank must run backward.
    pub fn all_gather_with_grad(&self, tensor: &Tensor) -> Result<Tensor> {
        self.gather("all_gather_with_grad", tensor, tensor.requires_grad())
    }

    /// The sum of every rank's `tensor` as a new tensor that keeps gradients: backward sums
    /// the incoming gradient over all ranks (what synchronised batch-norm statistics need).
    pub fn all_reduce_with_grad(&self, tensor: &Tensor) -> Result<Tensor> {
        let op = "all_reduce_with_grad";
        self.check_device(op, tensor)?;
        let Some(handle) = self.handle else {
            return Ok(tensor.shallow_clone());
        };
        if !tensor.requires_grad() {
            let mut sum = tensor.copy();
            self.all_reduce_(&mut sum, Reduce::Sum)?;
            return Ok(sum);
        }
        self.new_tensor(op, |out| {
            // SAFETY: `handle` and `tensor` are live; the shim writes an owned tensor or
            // nothing into `out`.
            unsafe { ffi::ctr_dist_allreduce_with_grad(handle.as_ptr(), tensor.as_ptr(), out) }
        })
    }

    /// The owned tensor a shim `call` writes into its out-pointer on success.
    fn new_tensor(
        &self,
        op: &'static str,
        call: impl FnOnce(*mut *mut torch_sys::C_tensor) -> c_int,
    ) -> Result<Tensor> {
        let mut out = std::ptr::null_mut();
        let code = call(&mut out);
        self.check(op, code)?;
        // SAFETY: the call succeeded, so `out` is an owned tensor handle, whose ownership
        // `from_ptr` takes.
        Ok(unsafe { Tensor::from_ptr(out) })
    }

    /// Runs `f` with this group as the one that [`synced_sum`] sums over on this thread
    /// (models' batch-norm layers use it for statistics over the global batch).
    pub fn synchronising<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Restore(*const ProcessGroup);
        impl Drop for Restore {
            fn drop(&mut self) {
                SYNC_GROUP.with(|g| g.set(self.0));
            }
        }
        let previous = SYNC_GROUP.with(|g| g.replace(self as *const ProcessGroup));
        let _restore = Restore(previous);
        f()
    }

    fn gather(&self, op: &'static str, tensor: &Tensor, with_grad: bool) -> Result<Tensor> {
        self.check_device(op, tensor)?;
        let Some(handle) = self.handle else {
            return Ok(if with_grad {
                tensor.shallow_clone()
            } else {
                tensor.detach()
            });
        };
        self.new_tensor(op, |out| {
            // SAFETY: `handle` and `tensor` are live; the shim writes an owned tensor or
            // nothing into `out`.
            unsafe {
                ffi::ctr_dist_allgather(
                    handle.as_ptr(),
                    tensor.as_ptr(),
                    c_int::from(with_grad),
                    out,
                )
            }
        })
    }

    /// Overwrites every tensor of `variables` (a model's parameters and buffers) with rank
    /// 0's, so that all ranks start from the same weights.
    pub fn broadcast_parameters(&self, variables: &[Tensor]) -> Result<()> {
        for variable in variables {
            let mut target = variable.shallow_clone();
            self.broadcast_(&mut target, 0)?;
        }
        Ok(())
    }

    /// Averages the gradients of `variables` over all ranks in place, as data-parallel
    /// training does after each backward: every rank then holds the gradient of the mean
    /// of all ranks' losses, which is one big batch's gradient when each rank's loss is
    /// its own batch's mean and the batches are the same size. Gradients travel in buckets
    /// of at most `bucket_bytes` (flattened, one all-reduce per bucket). A variable with a
    /// gradient on some ranks and none on others is an error on every rank, before any
    /// gradient is changed; variables without a gradient on every rank are left alone.
    pub fn average_gradients(&self, variables: &[Tensor], bucket_bytes: usize) -> Result<()> {
        if self.handle.is_none() {
            return Ok(());
        }
        let grads: Vec<Tensor> = variables.iter().map(Tensor::grad).collect();
        let defined: Vec<i64> = grads.iter().map(|g| i64::from(g.defined())).collect();
        let mut agreed = Tensor::from_slice(&defined);
        self.all_reduce_(&mut agreed, Reduce::Sum)?;
        let agreed = Vec::<i64>::try_from(&agreed)?;
        let world = self.world_size as i64;
        if let Some(i) = agreed.iter().position(|&n| n != 0 && n != world) {
            return Err(Error::DistShapes {
                message: format!(
                    "average_gradients: variable {i} has a gradient on {} of {world} ranks                      (unused on some ranks?)",
                    agreed[i]
                ),
            });
        }
        let _no_grad = tch::no_grad_guard();
        let present: Vec<&Tensor> = grads.iter().filter(|g| g.defined()).collect();
        for bucket in buckets(&present, bucket_bytes) {
            let parts: Vec<Tensor> = bucket.iter().map(|g| g.flatten(0, -1)).collect();
            let mut flat = Tensor::cat(&parts, 0);
            self.all_reduce_(&mut flat, Reduce::Mean)?;
            let mut offset = 0;
            for grad in bucket {
                let n = grad.numel() as i64;
                grad.shallow_clone()
                    .copy_(&flat.narrow(0, offset, n).view_as(grad));
                offset += n;
            }
        }
        Ok(())
    }

    /// Returns once every rank has called it.
    pub fn barrier(&self) -> Result<()> {
        let Some(handle) = self.handle else {
            return Ok(());
        };
        // SAFETY: `handle` is live.
        let code = unsafe { ffi::ctr_dist_barrier(handle.as_ptr()) };
        self.check("barrier", code)
    }

    /// The first failure that made the group unusable, if any.
    pub fn failure(&self) -> Option<String> {
        let handle = self.handle?;
        // SAFETY: `handle` is live; the message is copied at once.
        unsafe { ffi::ctr_dist_failure(handle.as_ptr()) };
        Some(ffi::last_message()).filter(|m| !m.is_empty())
    }

    /// Refuses tensors the group cannot carry: CPU tensors go straight to Gloo, CUDA
    /// tensors through a host copy; other devices not at all.
    fn check_device(&self, op: &'static str, tensor: &Tensor) -> Result<()> {
        if !matches!(tensor.device(), Device::Cpu | Device::Cuda(_)) {
            return Err(Error::DistUnsupported {
                op,
                reason: format!(
                    "a tensor on {:?}: the Gloo group takes CPU and CUDA tensors",
                    tensor.device()
                ),
            });
        }
        Ok(())
    }

    fn check(&self, op: &'static str, code: c_int) -> Result<()> {
        let (rank, world_size) = (self.rank, self.world_size);
        match code {
            0.. => Ok(()),
            -6 => Err(Error::DistGroupFailed {
                op,
                first: ffi::last_message(),
            }),
            -7 => Err(Error::DistShapes {
                message: ffi::last_message(),
            }),
            _ => {
                let message = ffi::last_message();
                Err(Error::DistCollective {
                    op,
                    rank,
                    world_size,
                    failure: DistFailure::of(&message),
                    message,
                })
            }
        }
    }
}

thread_local! {
    /// The group of the innermost [`ProcessGroup::synchronising`] on this thread (null
    /// outside one).
    static SYNC_GROUP: std::cell::Cell<*const ProcessGroup> = const { std::cell::Cell::new(std::ptr::null()) };
}

/// Inside [`ProcessGroup::synchronising`] of a group of more than one process, the sum of
/// `tensor` over its ranks, keeping gradients ([`ProcessGroup::all_reduce_with_grad`]);
/// `None` outside one. A failed sum is also `None` (the caller goes on with its own
/// values) and leaves the group failed, so its next collective reports the failure.
pub fn synced_sum(tensor: &Tensor) -> Option<Tensor> {
    let group = SYNC_GROUP.with(std::cell::Cell::get);
    // SAFETY: the pointer is set only for the duration of `synchronising`, which borrows the
    // group, and only on this thread.
    let group = unsafe { group.as_ref() }?;
    if group.world_size < 2 {
        return None;
    }
    group.all_reduce_with_grad(tensor).ok()
}

/// `tensors` in order, cut into runs of one kind and at most `bytes` each (a tensor larger
/// than `bytes` is a bucket of its own).
fn buckets<'a>(tensors: &[&'a Tensor], bytes: usize) -> Vec<Vec<&'a Tensor>> {
    let mut out: Vec<Vec<&Tensor>> = Vec::new();
    let mut used = 0;
    for &tensor in tensors {
        let size = tensor.numel() * tensor.kind().elt_size_in_bytes();
        let fits = out
            .last()
            .is_some_and(|bucket| bucket[0].kind() == tensor.kind() && used + size <= bytes);
        if fits {
            used += size;
            out.last_mut().expect("checked above").push(tensor);
        } else {
            used = size;
            out.push(vec![tensor]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Where `env` puts this process: ranks and sizes, master host and port.
    fn placed(env: &DistEnv) -> (usize, usize, usize, usize, &str, u16) {
        let e = env;
        let (rank, world, local, local_world) =
            (e.rank, e.world_size, e.local_rank, e.local_world_size);
        (
            rank,
            world,
            local,
            local_world,
            &e.master_addr,
            e.master_port,
        )
    }

    fn env(pairs: &[(&str, &str)]) -> Result<Option<DistEnv>> {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        DistEnv::from_vars(|k| vars.get(k).cloned())
    }

    #[test]
    fn torchrun_variables_are_read_and_checked() {
        assert_eq!(env(&[]).unwrap(), None, "no launcher: a single process");
        let base = [
            ("RANK", "3"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_RANK", "1"),
            ("LOCAL_WORLD_SIZE", "2"),
            ("MASTER_ADDR", "10.0.0.1"),
            ("MASTER_PORT", "29400"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
            ("TORCHELASTIC_RESTART_COUNT", "2"),
        ];
        let got = env(&base).unwrap().unwrap();
        assert_eq!(placed(&got), (3, 4, 1, 2, "10.0.0.1", 29400));
        assert!(got.agent_store && got.restart == 2 && got.launcher == Launcher::Torchrun);

        let err = env(&[("RANK", "0")]).unwrap_err().to_string();
        assert!(
            err.contains("WORLD_SIZE, MASTER_ADDR, MASTER_PORT"),
            "every missing one is named: {err}"
        );
        let mut bad = base;
        bad[0] = ("RANK", "4");
        let err = env(&bad).unwrap_err().to_string();
        assert!(err.contains("RANK") && err.contains("not below"), "{err}");
        bad[0] = ("RANK", "two");
        assert!(env(&bad).unwrap_err().to_string().contains("\"two\""));
        let mut bad = base;
        bad[5] = ("MASTER_PORT", "70000");
        assert!(env(&bad).unwrap_err().to_string().contains("not a port"));
    }

    #[test]
    fn slurm_variables_are_read_inside_a_job_step() {
        let base = [
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_TASKS_PER_NODE", "4(x2)"),
            ("SLURM_JOB_NODELIST", "gpu[07-08,12],cpu1"),
            ("SLURM_JOB_ID", "123456"),
        ];
        // Outside `srun` (a batch script's own shell) nothing is read.
        assert_eq!(env(&base).unwrap(), None);
        let mut step = base.to_vec();
        step.push(("SLURM_STEP_ID", "0"));
        let got = env(&step).unwrap().unwrap();
        assert_eq!(placed(&got), (5, 8, 1, 4, "gpu07", 29956));
        assert_eq!(got.launcher, Launcher::Slurm);
        step.push(("MASTER_ADDR", "head"));
        step.push(("MASTER_PORT", "1234"));
        let got = env(&step).unwrap().unwrap();
        assert_eq!((got.master_addr.as_str(), got.master_port), ("head", 1234));
    }

    #[test]
    fn host_lists_give_their_first_host() {
        assert_eq!(first_host("node7").as_deref(), Some("node7"));
        assert_eq!(first_host("a1,a2").as_deref(), Some("a1"));
        assert_eq!(first_host("gpu[03-05,9],cpu1").as_deref(), Some("gpu03"));
        assert_eq!(first_host("r[1-2]-n[01-04]").as_deref(), Some("r1-n01"));
        assert_eq!(first_host(""), None);
    }

    #[test]
    fn a_single_process_group_is_the_identity() {
        let group = ProcessGroup::single();
        let mut t = Tensor::from_slice(&[1.0f32, 2.0]);
        group.all_reduce_(&mut t, Reduce::Mean).unwrap();
        group.broadcast_(&mut t, 0).unwrap();
        group.barrier().unwrap();
        assert_eq!(Vec::<f32>::try_from(&t).unwrap(), [1.0, 2.0]);
        let x = Tensor::from_slice(&[3.0f64, 4.0]).set_requires_grad(true);
        let gathered = group.all_gather_with_grad(&x).unwrap();
        (&gathered * &gathered).sum(tch::Kind::Double).backward();
        assert_eq!(Vec::<f64>::try_from(&x.grad()).unwrap(), [6.0, 8.0]);
        assert!(!group.all_gather(&x).unwrap().requires_grad());
        assert!(group.failure().is_none());
        let err = group.broadcast_(&mut t, 1).unwrap_err().to_string();
        assert!(err.contains("root 1"), "{err}");
        let mut ints = Tensor::from_slice(&[1i64]);
        assert!(group.all_reduce_(&mut ints, Reduce::Mean).is_err());
    }

    #[test]
    fn buckets_keep_order_kind_and_size() {
        let cpu = (tch::Kind::Float, Device::Cpu);
        let a = Tensor::zeros([4], cpu); // 16 bytes
        let b = Tensor::zeros([2], cpu); // 8
        let c = Tensor::zeros([10], cpu); // 40: alone
        let d = Tensor::zeros([1], (tch::Kind::Double, Device::Cpu));
        let e = Tensor::zeros([1], cpu);
        let sizes: Vec<Vec<i64>> = buckets(&[&a, &b, &c, &d, &e], 24)
            .iter()
            .map(|bucket| bucket.iter().map(|t| t.numel() as i64).collect())
            .collect();
        assert_eq!(sizes, [vec![4, 2], vec![10], vec![1], vec![1]]);
    }

    #[test]
    fn failures_are_told_apart_by_their_message() {
        let of = DistFailure::of;
        assert_eq!(
            of("[gloo] Timed out waiting 2000ms for recv"),
            DistFailure::Timeout
        );
        assert_eq!(
            of("Connection closed by peer [127.0.0.1]:1234"),
            DistFailure::PeerLost
        );
        assert_eq!(of("Connection reset by peer"), DistFailure::PeerLost);
        assert_eq!(
            of("[gloo] Timed out waiting for recv; rank 2 of 3 was lost (stopped answering)"),
            DistFailure::PeerLost
        );
        assert_eq!(of("something else"), DistFailure::Other);
    }
}
