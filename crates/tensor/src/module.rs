//! The module traits every network in the workspace implements.

pub use tch::nn::{Module, ModuleT};

/// A network that maps a batch of inputs to a batch of embeddings of a fixed width.
///
/// `forward_t(xs, train)` returns `[N, out_dim()]`; `train` switches batch-norm statistics and
/// dropout as in PyTorch's `module.train()` / `module.eval()`.
pub trait Encoder: ModuleT {
    /// Width of the embeddings this encoder produces.
    fn out_dim(&self) -> i64;
}
