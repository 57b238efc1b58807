//! `keep_freed_memory`: a large tensor allocated again after a free reuses pages that are
//! already mapped instead of faulting in fresh ones. Its own test binary without the test
//! harness: it runs on the process's main thread, whose heap (glibc's main arena) the
//! setting governs, as `contrastive train` allocates its tensors there, and no other test
//! allocates meanwhile.

use contrastive_tensor::keep_freed_memory;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn main() {
    use glibc::faults_of_a_large_tensor;
    // glibc's defaults: every 48 MiB tensor is a fresh mapping, faulted in page by page.
    let default = faults_of_a_large_tensor().min(faults_of_a_large_tensor());
    assert!(default > 10_000, "{default} faults with the defaults");
    assert!(keep_freed_memory());
    faults_of_a_large_tensor(); // grows the heap once
    let kept = faults_of_a_large_tensor();
    assert!(
        kept < default / 10,
        "{kept} faults with freed memory kept, {default} without"
    );
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn main() {
    assert!(!keep_freed_memory(), "only glibc's allocator is tuned");
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    use contrastive_tensor::{Device, Kind, Tensor};

    /// Minor page faults of this process so far.
    fn minor_faults() -> i64 {
        // SAFETY: getrusage fills the struct it is given.
        unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut usage), 0);
            usage.ru_minflt
        }
    }

    /// Page faults of filling a fresh 48 MiB tensor (12 288 pages of 4 KiB).
    pub fn faults_of_a_large_tensor() -> i64 {
        let before = minor_faults();
        let t = Tensor::ones([12 << 20], (Kind::Float, Device::Cpu));
        assert_eq!(t.double_value(&[12_345]), 1.0);
        drop(t);
        minor_faults() - before
    }
}
