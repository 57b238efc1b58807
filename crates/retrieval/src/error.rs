//! The crate's error type.

use contrastive_tensor::Tensor;

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
    /// A vector holding NaN or infinity: it has no meaningful distance to anything (a NaN
    /// row would rank first or last for every query, depending on the code path).
    #[error("{what}: row {row} holds NaN or infinity; only finite vectors can be compared")]
    NonFinite {
        /// The input, in words (`"store embeddings"`, `"queries"`).
        what: &'static str,
        /// The first such row.
        row: i64,
    },
    /// A collection's backend (a database) cannot be reached now; the same call may work
    /// once it is back.
    #[error("the collection is unavailable: {message}")]
    Unavailable {
        /// Why, without credentials.
        message: String,
    },
    /// A collection's backend failed an operation.
    #[error("the collection's database: {message}")]
    Backend {
        /// What failed, without credentials.
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

/// An [`Error::NonFinite`] naming the first row of `x` (`[N, ...]`) that holds NaN or
/// infinity; `Ok` when every value is finite (or `x` is not floating-point).
pub(crate) fn check_finite(what: &'static str, x: &Tensor) -> Result<()> {
    if !x.is_floating_point() || x.numel() == 0 {
        return Ok(());
    }
    let finite = x.f_isfinite()?;
    if finite.f_all()?.int64_value(&[]) == 1 {
        return Ok(());
    }
    let bad_rows = if x.dim() >= 2 {
        finite.logical_not().flatten(1, -1).any_dim(1, false)
    } else {
        finite.logical_not()
    };
    Err(Error::NonFinite {
        what,
        row: bad_rows.nonzero().int64_value(&[0, 0]),
    })
}

pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Error {
    Error::Invalid {
        field,
        message: message.into(),
    }
}
