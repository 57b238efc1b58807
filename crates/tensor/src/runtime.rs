//! Process-wide libtorch settings: the random seed, the number of CPU threads and how
//! freed tensor memory is kept.

use std::sync::{Mutex, PoisonError};

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

/// Held while a [`seeded`] closure runs.
static SEEDED: Mutex<()> = Mutex::new(());

/// Seeds libtorch's generators with `seed` ([`seed_all`]) and runs `draw` while no other
/// `seeded` call runs, so that what `draw` takes from those process-wide generators
/// (weight initialisation, say) depends on `seed` alone, even when other threads of the
/// process build models of their own through `seeded` at the same time.
pub fn seeded<T>(seed: u64, draw: impl FnOnce() -> T) -> T {
    let _only = SEEDED.lock().unwrap_or_else(PoisonError::into_inner);
    seed_all(seed);
    draw()
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

/// Makes the C allocator keep freed memory for reuse instead of handing it back to the
/// operating system; returns whether the setting took (always false off glibc).
///
/// libtorch allocates CPU tensors with `malloc`. glibc serves blocks above its mmap
/// threshold (128 KiB at first, rising to at most 32 MiB as such blocks are freed) with
/// fresh `mmap`s and unmaps them on free, so every activation that large is faulted in page
/// by page at every training step: about 190 000 page faults per step of benchmark W1 in
/// fp32 (512 views of 32 x 28 x 28 floats are 51 MB per layer). With this setting large
/// blocks come from the heap, freed memory stays there, and a step reuses the pages of the
/// step before. The process's resident memory then stays at its peak until it exits.
///
/// It governs the heap of the process's main thread (glibc's main arena), where a program
/// that trains on its main thread allocates its tensors; other threads keep heaps of their
/// own that still hand large blocks back. Call it once, early; the `contrastive` binary
/// does for every command but `serve`. A long-lived process whose large temporaries grow
/// (a service saving a growing collection after every insert) should not: its heap then
/// fragments and grows with every write, since nothing is mapped or handed back.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; it is safe to call at any time.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
