//! Choosing the device a run uses, from the string a user writes in a config or on the
//! command line.

use tch::{Cuda, Device};

use crate::{Error, Result, ffi};

/// Number of CUDA devices libtorch can see (0 on a machine without a GPU or a CPU-only build).
pub fn cuda_device_count() -> usize {
    if !ffi::torch_cuda_linked() {
        return 0;
    }
    usize::try_from(Cuda::device_count()).unwrap_or(0)
}

/// Whether at least one CUDA device is usable.
pub fn cuda_is_available() -> bool {
    cuda_device_count() > 0
}

/// Parses a device string and checks that the device exists on this machine.
///
/// Accepted (case-insensitive, surrounding spaces ignored): `cpu`; `cuda` (the first GPU);
/// `cuda:N`; `mps` (Apple GPUs); `auto` (the first GPU when there is one, else the CPU).
///
/// ```
/// let device = contrastive_tensor::parse_device("auto").unwrap();
/// assert!(matches!(device, tch::Device::Cpu | tch::Device::Cuda(0)));
/// assert!(contrastive_tensor::parse_device("tpu").is_err());
/// ```
pub fn parse_device(spec: &str) -> Result<Device> {
    let normalized = spec.trim().to_ascii_lowercase();
    let unavailable = |reason: String| Error::DeviceUnavailable {
        spec: spec.to_owned(),
        reason,
    };
    match normalized.as_str() {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(if cuda_is_available() {
            Device::Cuda(0)
        } else {
            Device::Cpu
        }),
        "mps" => {
            if tch::utils::has_mps() {
                Ok(Device::Mps)
            } else {
                Err(unavailable("this libtorch has no MPS support".into()))
            }
        }
        "cuda" => cuda_index(0).map_err(unavailable),
        other => {
            let index = other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| Error::InvalidDevice {
                    spec: spec.to_owned(),
                })?;
            cuda_index(index).map_err(unavailable)
        }
    }
}

/// The device of one rank of a data-parallel job, from its config's device string: with
/// several ranks on a machine, `cuda` and `auto` (on a machine with a GPU) give each its own
/// GPU, `cuda:<local_rank>`, as torchrun's convention has it; `cpu`, `mps` and an explicit
/// `cuda:N` are used as written. A rank that sees one GPU while `CUDA_VISIBLE_DEVICES` is
/// set (SLURM's `--gpus-per-task=1`, a launcher that gives each rank its own) takes it,
/// `cuda:0`. Otherwise a machine with fewer GPUs than ranks is an error on every rank alike.
///
/// ```
/// use contrastive_tensor::device_for_rank;
/// assert_eq!(device_for_rank("cpu", 1, 2).unwrap(), tch::Device::Cpu);
/// if !contrastive_tensor::cuda_is_available() {
///     let err = device_for_rank("cuda", 1, 2).unwrap_err().to_string();
///     assert!(err.contains("local rank 1 of 2 needs cuda:1"), "{err}");
/// }
/// ```
pub fn device_for_rank(spec: &str, local_rank: usize, local_world_size: usize) -> Result<Device> {
    let normalized = spec.trim().to_ascii_lowercase();
    let count = cuda_device_count();
    let own_gpu =
        local_world_size > 1 && (normalized == "cuda" || (normalized == "auto" && count > 0));
    if !own_gpu {
        return parse_device(spec);
    }
    let own_visible = std::env::var_os("CUDA_VISIBLE_DEVICES").is_some_and(|v| !v.is_empty());
    rank_gpu(count, local_rank, local_world_size, own_visible)
        .map(Device::Cuda)
        .map_err(|reason| Error::DeviceUnavailable {
            spec: spec.to_owned(),
            reason,
        })
}

/// The GPU of local rank `local_rank` of `local_world_size` on a machine where it sees
/// `count`; `own_visible`: the launcher chose which GPUs this rank sees.
fn rank_gpu(
    count: usize,
    local_rank: usize,
    local_world_size: usize,
    own_visible: bool,
) -> std::result::Result<usize, String> {
    let needs = format!("local rank {local_rank} of {local_world_size} needs cuda:{local_rank}");
    if count == 1 && own_visible {
        Ok(0)
    } else if count == 0 {
        Err(format!("{needs}, but {NO_CUDA}"))
    } else if local_world_size > count || local_rank >= count {
        Err(format!(
            "{needs}, but this machine has {count} CUDA device(s): start at most {count} \
             ranks per machine, or set run.device = \"cpu\""
        ))
    } else {
        Ok(local_rank)
    }
}

const NO_CUDA: &str = "no CUDA device found (no GPU, no driver, or a CPU-only libtorch)";

fn cuda_index(index: usize) -> std::result::Result<Device, String> {
    let count = cuda_device_count();
    if index < count {
        Ok(Device::Cuda(index))
    } else if count == 0 {
        Err(NO_CUDA.into())
    } else {
        Err(format!(
            "this machine has {count} CUDA device(s), numbered 0..{count}"
        ))
    }
}

/// Waits until the work queued on `device` has finished, so that a timer around it measures
/// the work and not its launch (CUDA runs kernels asynchronously); nothing to wait for on
/// the CPU.
pub fn synchronize(device: Device) {
    if let Device::Cuda(index) = device {
        Cuda::synchronize(i64::try_from(index).unwrap_or(0));
    }
}

/// A short human description of the device, for logs and reports.
pub fn describe_device(device: Device) -> String {
    match device {
        Device::Cpu => format!("cpu ({} threads)", crate::threads()),
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Mps => "mps".into(),
        Device::Vulkan => "vulkan".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_local_rank_gets_its_own_gpu_or_a_clear_error() {
        assert_eq!(rank_gpu(4, 3, 4, false), Ok(3));
        assert_eq!(rank_gpu(8, 0, 2, false), Ok(0));
        // Each rank given its own GPU by the launcher sees it as the first.
        assert_eq!(rank_gpu(1, 3, 4, true), Ok(0));
        assert!(rank_gpu(1, 3, 4, false).is_err());
        let short = rank_gpu(2, 3, 4, true).unwrap_err();
        assert!(
            short.contains("local rank 3 of 4 needs cuda:3")
                && short.contains("this machine has 2 CUDA device(s)"),
            "{short}"
        );
        // Every rank refuses alike, also those whose own index exists.
        assert!(rank_gpu(2, 0, 4, false).is_err());
        assert!(
            rank_gpu(0, 1, 2, true)
                .unwrap_err()
                .contains("no CUDA device found")
        );
    }

    #[test]
    fn one_rank_or_the_cpu_uses_the_device_as_written() {
        assert_eq!(device_for_rank("cpu", 0, 1).unwrap(), Device::Cpu);
        assert_eq!(device_for_rank(" CPU ", 1, 2).unwrap(), Device::Cpu);
        assert!(device_for_rank("tpu", 0, 2).is_err());
    }
}
