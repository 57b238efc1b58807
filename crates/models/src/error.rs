//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in `contrastive-models`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting outside its allowed values.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The setting's name.
        field: &'static str,
        /// The allowed values and the one given.
        message: String,
    },
    /// A weights file that does not describe a model.
    #[error("{path} is not a saved model: {message}")]
    NotAModel {
        /// The file.
        path: PathBuf,
        /// What is missing.
        message: String,
    },
    /// Reading or writing weights failed.
    #[error(transparent)]
    Tensor(#[from] contrastive_tensor::Error),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
