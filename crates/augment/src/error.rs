//! The crate's error type.

/// A transform that cannot be built, or an image it cannot take.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A parameter outside its allowed range, found when the transform is built.
    #[error("{op}: invalid {field}: {message}")]
    InvalidParameter {
        /// The transform.
        op: &'static str,
        /// The parameter.
        field: &'static str,
        /// What is allowed, and what was given.
        message: String,
    },
    /// Turning views into a tensor failed (mismatched shapes, normalisation channels).
    #[cfg(feature = "tensor")]
    #[error(transparent)]
    Tensor(#[from] contrastive_tensor::Error),
    /// An image the operation cannot take (zero size, wrong channel count, crop outside).
    #[error("{op}: {message}")]
    BadImage {
        /// The operation.
        op: &'static str,
        /// What is wrong with the image.
        message: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn invalid(op: &'static str, field: &'static str, message: impl Into<String>) -> Error {
    Error::InvalidParameter {
        op,
        field,
        message: message.into(),
    }
}

pub(crate) fn bad_image(op: &'static str, message: impl Into<String>) -> Error {
    Error::BadImage {
        op,
        message: message.into(),
    }
}
