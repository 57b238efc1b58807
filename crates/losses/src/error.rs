//! The crate's error type.

/// Everything that can go wrong when building or computing a loss.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value outside its allowed range.
    #[error("invalid {field}: {message}")]
    InvalidConfig {
        /// The field, as named in the config.
        field: &'static str,
        /// What is allowed, and what was given.
        message: String,
    },
    /// Inputs of the wrong rank, length or kind.
    #[error("{op}: {message}")]
    Shape {
        /// The loss or operation.
        op: &'static str,
        /// What was expected and what came.
        message: String,
    },
    /// NaN or infinite values in the inputs.
    #[error("{op}: {what} contain NaN or infinite values")]
    NonFinite {
        /// The loss or operation.
        op: &'static str,
        /// Which input.
        what: &'static str,
    },
    /// A batch in which no pair is positive, so the loss is undefined.
    #[error("{op}: the batch has no positive pair (every label is different)")]
    NoPositives {
        /// The loss.
        op: &'static str,
    },
    /// libtorch reported an error.
    #[error(transparent)]
    Torch(#[from] contrastive_tensor::TchError),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Error {
    Error::InvalidConfig {
        field,
        message: message.into(),
    }
}
