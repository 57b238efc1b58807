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

fn cuda_index(index: usize) -> std::result::Result<Device, String> {
    let count = cuda_device_count();
    if index < count {
        Ok(Device::Cuda(index))
    } else if count == 0 {
        Err("no CUDA device found (no GPU, no driver, or a CPU-only libtorch)".into())
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
