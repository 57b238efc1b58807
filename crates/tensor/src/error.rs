//! The crate's error type.

use std::path::PathBuf;

use tch::{Kind, TchError};

/// Everything that can go wrong in `contrastive-tensor`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A device string that is not `cpu`, `cuda`, `cuda:N`, `mps` or `auto`.
    #[error("unknown device {spec:?}: expected \"cpu\", \"cuda\", \"cuda:N\", \"mps\" or \"auto\"")]
    InvalidDevice {
        /// The string as given.
        spec: String,
    },
    /// A well-formed device that this machine does not have.
    #[error("device {spec:?} is not available: {reason}")]
    DeviceUnavailable {
        /// The string as given.
        spec: String,
        /// What was found instead.
        reason: String,
    },
    /// A thread count of zero.
    #[error("thread count must be at least 1, got {0}")]
    InvalidThreadCount(usize),
    /// A tensor of another element type than the operation needs.
    #[error("{op}: expected a tensor of kind {expected:?}, got {actual:?}")]
    KindMismatch {
        /// The operation that checked.
        op: &'static str,
        /// The kind it needs.
        expected: Kind,
        /// The kind it got.
        actual: Kind,
    },
    /// A tensor, array or image of another shape than the operation needs.
    #[error("{op}: expected shape {expected}, got {actual:?}")]
    ShapeMismatch {
        /// The operation that checked.
        op: &'static str,
        /// The shape it needs, in words (for example `[C, H, W] with C in 1..=4`).
        expected: String,
        /// The shape it got.
        actual: Vec<i64>,
    },
    /// Normalisation parameters that cannot be used.
    #[error("invalid normalisation: {0}")]
    InvalidNormalize(String),
    /// A precision string that is not `fp32`, `bf16` or `fp16`.
    #[error("unknown precision {0:?}: expected \"fp32\", \"bf16\" or \"fp16\"")]
    InvalidPrecision(String),
    /// Mixed precision requested on a device where libtorch has no autocast.
    #[error("{precision} autocast is not supported on device {device:?}")]
    UnsupportedPrecision {
        /// The precision asked for.
        precision: crate::Precision,
        /// The device asked for.
        device: tch::Device,
    },
    /// A checkpoint lacks tensors that the model has.
    #[error("checkpoint {}: missing {} tensor(s): {}", path.display(), names.len(), names.join(", "))]
    MissingTensors {
        /// The checkpoint file.
        path: PathBuf,
        /// The names the model has and the file lacks.
        names: Vec<String>,
    },
    /// A checkpoint holds tensors that the model does not have.
    #[error("checkpoint {}: unexpected {} tensor(s): {}", path.display(), names.len(), names.join(", "))]
    UnexpectedTensors {
        /// The checkpoint file.
        path: PathBuf,
        /// The names the file has and the model lacks.
        names: Vec<String>,
    },
    /// A checkpoint tensor whose shape differs from the model's.
    #[error(
        "checkpoint {}: tensor {name:?} has shape {found:?} but the model expects {expected:?}",
        path.display()
    )]
    TensorShapeMismatch {
        /// The checkpoint file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// The shape in the file.
        found: Vec<i64>,
        /// The shape in the model.
        expected: Vec<i64>,
    },
    /// A checkpoint tensor of another element type than the reader expects (a header
    /// edited from `F32` to `I32` keeps the byte size; converting would load garbage).
    #[error(
        "checkpoint {}: tensor {name:?} is stored as {found:?} but {expected:?} is expected",
        path.display()
    )]
    TensorKindMismatch {
        /// The checkpoint file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// The kind in the file.
        found: Kind,
        /// The kind the reader needs.
        expected: Kind,
    },
    /// A floating-point tensor holding NaN or infinity, where only finite values are valid
    /// (weights, optimiser state, embeddings).
    #[error(
        "{}: tensor {name:?} holds {count} non-finite value(s) (NaN or infinity)",
        path.display()
    )]
    NonFiniteTensor {
        /// The file (or what was being checked).
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// How many of its values are not finite.
        count: i64,
    },
    /// A file that is not valid safetensors (truncated, corrupt, unsupported dtype).
    #[error("checkpoint {}: {message}", path.display())]
    InvalidCheckpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A launcher's variable that is missing or wrong (see [`crate::dist`]).
    #[error("distributed launch: {var} {message}")]
    DistEnv {
        /// The variable (or variables).
        var: String,
        /// What is wrong with it.
        message: String,
    },
    /// Joining a process group failed: the store could not be reached or hosted, or a peer
    /// did not arrive in time.
    #[error("rank {rank} of {world_size} could not join the group at {master}: {message}")]
    DistInit {
        /// This process's rank.
        rank: usize,
        /// Processes in the group.
        world_size: usize,
        /// The rendezvous store, `host:port`.
        master: String,
        /// c10d's message.
        message: String,
    },
    /// A collective failed; the group is unusable from now on.
    #[error("{op} failed on rank {rank} of {world_size} ({failure}): {message}")]
    DistCollective {
        /// The collective.
        op: &'static str,
        /// This process's rank.
        rank: usize,
        /// Processes in the group.
        world_size: usize,
        /// What kind of failure.
        failure: crate::dist::DistFailure,
        /// c10d's or gloo's message.
        message: String,
    },
    /// A collective on a group that failed before.
    #[error(
        "{op}: the process group failed earlier and cannot be used (drop it and exit): {first}"
    )]
    DistGroupFailed {
        /// The collective.
        op: &'static str,
        /// The first failure.
        first: String,
    },
    /// Ranks gave tensors of different shapes or kinds to a gather (every rank gets this
    /// error; the group stays usable).
    #[error("{message}")]
    DistShapes {
        /// Every rank's shape.
        message: String,
    },
    /// A collective asked for what it cannot do (a GPU tensor on a Gloo group, a mean of
    /// integers, a root outside the group).
    #[error("{op}: {reason} is not supported")]
    DistUnsupported {
        /// The collective.
        op: &'static str,
        /// What was asked.
        reason: String,
    },
    /// libtorch reported an error.
    #[error("libtorch: {0}")]
    Torch(#[from] TchError),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
