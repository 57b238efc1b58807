//! Process-wide libtorch settings: the random seed and the number of CPU threads.

use tch::Cuda;

use crate::{Error, Result, device::cuda_is_available};

/// Seeds libtorch's random generators (CPU and every CUDA device) with `seed`.
///
/// Our own Rust-side randomness is seeded separately and passed explicitly; this covers what
/// libtorch draws itself (weight initialisation, dropout, `Tensor::randn`).
pub fn seed_all(seed: u64) {
    // libtorch takes the seed as i64 and reinterprets it as u64; the bit pattern is kept.
    tch::manual_seed(seed as i64);
    if cuda_is_available() {
        Cuda::manual_seed_all(seed);
    }
}

/// Sets the number of threads libtorch uses for intra-op parallelism on the CPU.
pub fn set_threads(threads: usize) -> Result<()> {
    let n = i32::try_from(threads)
        .ok()
        .filter(|&n| n >= 1)
        .ok_or(Error::InvalidThreadCount(threads))?;
    tch::set_num_threads(n);
    Ok(())
}

/// The number of threads libtorch uses for intra-op parallelism on the CPU.
pub fn threads() -> usize {
    usize::try_from(tch::get_num_threads()).unwrap_or(1)
}
