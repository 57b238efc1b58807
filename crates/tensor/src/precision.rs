//! Mixed precision: autocast as a scoped guard, on the CPU as well as on CUDA.
//!
//! tch's own `autocast` only switches CUDA. This module drives libtorch's autocast state for
//! any device type through a small C++ shim, the way `torch.autocast(device_type, dtype)`
//! does: inside the guard, matrix products and convolutions run in the low-precision type
//! while reductions and losses stay in `f32`.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use tch::{Device, Kind};

use crate::ffi::{self, check};
use crate::{Error, Result};

/// The numeric precision a model runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precision {
    /// Everything in `f32`.
    Fp32,
    /// Autocast to bfloat16 (CPUs with AVX-512-BF16 or AMX, and CUDA GPUs from Ampere on).
    Bf16,
    /// Autocast to float16 (CUDA GPUs; libtorch also accepts it on the CPU).
    Fp16,
}

impl Precision {
    /// The low-precision kind autocast casts to (`Kind::Float` for [`Precision::Fp32`]).
    pub fn kind(self) -> Kind {
        match self {
            Precision::Fp32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
            Precision::Fp16 => Kind::Half,
        }
    }

    /// The fastest precision that keeps training accurate on `device`: bf16 on CUDA and on
    /// CPUs with native bf16 arithmetic (see [`cpu_has_native_bf16`]), fp32 otherwise.
    pub fn fastest_for(device: Device) -> Precision {
        match device {
            Device::Cuda(_) => Precision::Bf16,
            Device::Cpu if cpu_has_native_bf16() => Precision::Bf16,
            _ => Precision::Fp32,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Fp16 => "fp16",
        })
    }
}

impl FromStr for Precision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fp32" | "f32" | "float32" => Ok(Precision::Fp32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "fp16" | "f16" | "float16" | "half" => Ok(Precision::Fp16),
            _ => Err(Error::InvalidPrecision(s.to_owned())),
        }
    }
}

/// Whether this CPU computes bf16 natively (AMX-BF16 or AVX-512-BF16), which is when CPU
/// autocast pays off. Read from `/proc/cpuinfo` on Linux; `false` elsewhere.
pub fn cpu_has_native_bf16() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find(|l| l.starts_with("flags")).map(|flags| {
                flags
                    .split_whitespace()
                    .any(|f| f == "amx_bf16" || f == "avx512_bf16")
            })
        })
        .unwrap_or(false)
}

/// libtorch's `c10::DeviceType` codes.
fn device_type_code(device: Device) -> i32 {
    match device {
        Device::Cpu => 0,
        Device::Cuda(_) => 1,
        Device::Vulkan => 10,
        Device::Mps => 13,
    }
}

/// libtorch's `c10::ScalarType` codes for the kinds autocast accepts.
fn scalar_type_code(kind: Kind) -> i32 {
    match kind {
        Kind::Half => 5,
        Kind::Float => 6,
        Kind::BFloat16 => 15,
        other => unreachable!("autocast kinds are Half, Float and BFloat16, not {other:?}"),
    }
}

/// While alive, ops on the current thread run under autocast for one device type; dropping it
/// restores the previous state (guards nest). Made by [`autocast`].
///
/// Autocast state is per thread in libtorch, so the guard cannot be sent to another thread.
#[derive(Debug)]
#[must_use = "autocast is switched off again when the guard is dropped"]
pub struct AutocastGuard {
    /// `(device type, enabled before, dtype before)`; `None` for an fp32 no-op guard.
    previous: Option<(i32, bool, i32)>,
    _not_send: PhantomData<*const ()>,
}

/// Switches autocast on for `device`'s type with `precision`'s kind, until the returned guard
/// is dropped. [`Precision::Fp32`] returns a guard that changes nothing.
///
/// ```
/// use contrastive_tensor::{Device, Kind, Precision, Tensor, autocast};
/// let a = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
/// {
///     let _guard = autocast(Device::Cpu, Precision::Bf16).unwrap();
///     assert_eq!(a.matmul(&a).kind(), Kind::BFloat16);
/// }
/// assert_eq!(a.matmul(&a).kind(), Kind::Float);
/// ```
pub fn autocast(device: Device, precision: Precision) -> Result<AutocastGuard> {
    if precision == Precision::Fp32 {
        return Ok(AutocastGuard {
            previous: None,
            _not_send: PhantomData,
        });
    }
    if !matches!(device, Device::Cpu | Device::Cuda(_)) {
        return Err(Error::UnsupportedPrecision { precision, device });
    }
    let device_type = device_type_code(device);
    // SAFETY (all shim calls below): plain functions on libtorch's thread-local autocast state.
    let was_enabled = check(unsafe { ffi::ctr_autocast_is_enabled(device_type) })? == 1;
    let old_dtype = check(unsafe { ffi::ctr_autocast_get_dtype(device_type) })?;
    check(unsafe { ffi::ctr_autocast_set_dtype(device_type, scalar_type_code(precision.kind())) })?;
    check(unsafe { ffi::ctr_autocast_set_enabled(device_type, 1) })?;
    check(unsafe { ffi::ctr_autocast_increment_nesting() })?;
    Ok(AutocastGuard {
        previous: Some((device_type, was_enabled, old_dtype)),
        _not_send: PhantomData,
    })
}

impl AutocastGuard {
    /// Whether this guard switched autocast on (false for fp32).
    pub fn is_active(&self) -> bool {
        self.previous.is_some()
    }
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        if let Some((device_type, was_enabled, old_dtype)) = self.previous {
            // SAFETY: as in `autocast`. Errors cannot be reported from drop; these calls only
            // fail on invalid codes, which `autocast` already used successfully.
            unsafe {
                ffi::ctr_autocast_decrement_nesting();
                ffi::ctr_autocast_set_enabled(device_type, i32::from(was_enabled));
                ffi::ctr_autocast_set_dtype(device_type, old_dtype);
            }
        }
    }
}
