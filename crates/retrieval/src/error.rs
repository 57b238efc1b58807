//! The crate's error type.

/// Everything that can go wrong in `contrastive-retrieval`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A parameter outside its allowed range.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The parameter's name.
        field: &'static str,
        /// The allowed range and the value given.
        message: String,
    },
    /// Inputs whose shapes do not fit together.
    #[error("{op}: {message}")]
    Shape {
        /// The operation that checked.
        op: &'static str,
        /// What did not fit.
        message: String,
    },
    /// An error from libtorch.
    #[error(transparent)]
    Tensor(#[from] contrastive_tensor::Error),
    /// An error from tch.
    #[error(transparent)]
    Tch(#[from] contrastive_tensor::TchError),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Error {
    Error::Invalid {
        field,
        message: message.into(),
    }
}
