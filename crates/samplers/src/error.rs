//! The crate's error type.

/// A sampler that cannot be built from what it was given.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A parameter outside its allowed range.
    #[error("invalid {field}: {message}")]
    InvalidConfig {
        /// The parameter.
        field: &'static str,
        /// What is allowed, and what was given.
        message: String,
    },
    /// Data that cannot give the batches asked for (too few classes, items or frames).
    #[error("{0}")]
    NotEnoughData(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Error {
    Error::InvalidConfig {
        field,
        message: message.into(),
    }
}
