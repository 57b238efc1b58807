//! The crate's error type.

use std::path::{Path, PathBuf};

/// Everything that can stop a training run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config value outside its allowed range; names the field.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The field, as `section.key`.
        field: &'static str,
        /// The allowed range and the value given.
        message: String,
    },
    /// A config file that does not parse (unknown keys, wrong types).
    #[error("config: {0}")]
    Config(String),
    /// The dataset is not where the config says.
    #[error("{message}")]
    MissingData {
        /// What was looked for and how to get it.
        message: String,
    },
    /// The loss became NaN or infinite; the last good checkpoint is kept.
    #[error(
        "the loss became {value} at step {step}; stopped. The last good checkpoint is {checkpoint} \
         (try a lower optimizer.lr or optimizer.clip_grad_norm)"
    )]
    NonFiniteLoss {
        /// The step whose loss it was.
        step: u64,
        /// The value.
        value: f64,
        /// The checkpoint to resume from, or `none yet`.
        checkpoint: String,
    },
    /// The model, optimiser or queue came to hold NaN or infinity (while the loss was
    /// still finite); that state is not saved and the last good checkpoint is kept.
    #[error(
        "the training state became non-finite by step {step}: {tensor} holds {count} NaN or \
         infinite value(s); stopped without saving it. The last good checkpoint is \
         {checkpoint} (try a lower optimizer.lr or optimizer.clip_grad_norm)"
    )]
    NonFiniteState {
        /// Steps done when it was found.
        step: u64,
        /// The first tensor found holding such values.
        tensor: String,
        /// How many of its values are not finite.
        count: i64,
        /// The checkpoint to resume from, or `none yet`.
        checkpoint: String,
    },
    /// A run directory that holds another run, or a checkpoint that does not fit the config.
    #[error("{0}")]
    Run(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// From the data crate.
    #[error(transparent)]
    Data(#[from] contrastive_data::Error),
    /// From the drawing crate.
    #[error(transparent)]
    Draw(#[from] contrastive_draw::Error),
    /// From the augmentations.
    #[error(transparent)]
    Augment(#[from] contrastive_augment::Error),
    /// From the samplers.
    #[error(transparent)]
    Samplers(#[from] contrastive_samplers::Error),
    /// From the losses.
    #[error(transparent)]
    Losses(#[from] contrastive_losses::Error),
    /// From the models.
    #[error(transparent)]
    Models(#[from] contrastive_models::Error),
    /// From the evaluations.
    #[error(transparent)]
    Retrieval(#[from] contrastive_retrieval::Error),
    /// From the tensor layer.
    #[error(transparent)]
    Tensor(#[from] contrastive_tensor::Error),
    /// From libtorch.
    #[error(transparent)]
    Tch(#[from] contrastive_tensor::TchError),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Error {
    Error::Invalid {
        field,
        message: message.into(),
    }
}

/// An error unless `range` (when given) is `[min, max]` with `0 < min <= max <= 1`.
pub(crate) fn area_range(field: &'static str, range: Option<[f64; 2]>) -> Result<()> {
    match range {
        Some([min, max]) if !(min > 0.0 && min <= max && max <= 1.0) => Err(invalid(
            field,
            format!("[{min}, {max}] must satisfy 0 < min <= max <= 1"),
        )),
        _ => Ok(()),
    }
}

/// An error unless `low <= value <= high`.
pub(crate) fn in_range(field: &'static str, value: f64, low: f64, high: f64) -> Result<()> {
    if (low..=high).contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("must be in [{low}, {high}], got {value}"),
        ))
    }
}

/// An error unless `value` is finite and above zero.
pub(crate) fn positive(field: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(invalid(field, format!("must be > 0, got {value}")))
    }
}

/// An error unless `value >= low`.
pub(crate) fn at_least(field: &'static str, value: usize, low: usize) -> Result<()> {
    if value >= low {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("must be at least {low}, got {value}"),
        ))
    }
}

/// Logs `message` as a warning (the binary prints it) and keeps it for the run's observer.
pub(crate) fn warn(warnings: &mut Vec<String>, message: String) {
    tracing::warn!("{message}");
    warnings.push(message);
}
