//! `contrastive-tensor`: the one crate of the workspace that talks to libtorch (through
//! [`tch`]). Everything above it uses these re-exports and helpers:
//!
//! - [`Tensor`], [`Device`], [`Kind`], [`nn`], [`no_grad`] and the [`Module`], [`ModuleT`] and
//!   [`Encoder`] traits;
//! - devices from strings ([`parse_device`]: `"cpu"`, `"cuda"`, `"cuda:1"`, `"auto"`),
//!   seeding ([`seed_all`], and [`seeded`] for draws that other threads must not disturb)
//!   and CPU threads ([`set_threads`]);
//! - conversions: `ndarray` <-> tensor ([`tensor_from_array`], [`array_from_tensor`]),
//!   `u8` images `[H, W, C]` <-> float tensors `[C, H, W]` ([`tensor_from_hwc`],
//!   [`hwc_from_tensor`], [`stack_hwc`]), and [`Normalize`];
//! - `.safetensors` checkpoints written atomically and loaded strictly
//!   ([`save_safetensors`], [`SafetensorsFile`], [`load_var_store`]);
//! - mixed precision on the CPU and CUDA ([`autocast`] with a [`Precision`]) and the
//!   channels-last layout ([`to_channels_last`], [`var_store_to_channels_last`]);
//! - data-parallel collectives on c10d's Gloo backend ([`dist`]: launch from torchrun's or
//!   SLURM's variables, all-reduce, broadcast, all-gather with gradients, barrier).
//!
//! ```
//! use contrastive_tensor::{Device, Kind, Precision, Tensor, autocast, nn, parse_device, seed_all};
//! use contrastive_tensor::{Module, tensor_from_hwc};
//!
//! seed_all(7);
//! let device = parse_device("auto")?;
//! let vs = nn::VarStore::new(device);
//! let conv = nn::conv2d(vs.root() / "conv1", 1, 8, 3, Default::default());
//! let image = ndarray::Array3::<u8>::zeros((28, 28, 1));
//! let batch = tensor_from_hwc(image.view()).unsqueeze(0).to_device(device);
//! let features = {
//!     let _mixed = autocast(device, Precision::fastest_for(device))?;
//!     conv.forward(&batch)
//! };
//! assert_eq!(features.size(), [1, 8, 26, 26]);
//! # Ok::<(), contrastive_tensor::Error>(())
//! ```

mod array;
mod device;
pub mod dist;
mod error;
mod ffi;
mod image;
mod layout;
mod module;
mod precision;
mod runtime;
mod safetensors_io;

pub use tch::{self, Device, Kind, TchError, Tensor, nn, no_grad, no_grad_guard};

pub use crate::array::{
    array_from_tensor, array_from_tensor_dim, tensor_from_array, with_bf16_bits, with_f32_slice,
};
pub use crate::device::{
    cuda_device_count, cuda_is_available, describe_device, device_for_rank, parse_device,
    synchronize,
};
pub use crate::error::{Error, Result};
pub use crate::image::{
    Normalize, hwc_from_tensor, stack_hwc, stack_hwc_u8, tensor_from_hwc, u8_to_unit_float,
    unstack_to_hwc,
};
pub use crate::layout::{
    is_channels_last, to_channels_last, to_contiguous, var_store_to_channels_last,
};
pub use crate::module::{Encoder, Module, ModuleT};
pub use crate::precision::{AutocastGuard, Precision, autocast, cpu_has_native_bf16};
pub use crate::runtime::{keep_freed_memory, seed_all, seeded, set_threads, threads};
pub use crate::safetensors_io::{
    DIGEST_KEY, SafetensorsFile, StagedFile, first_non_finite, load_var_store, non_finite_count,
    save_safetensors, save_var_store, stage_safetensors, write_atomically,
};

/// The libtorch version this crate is built for (tch 0.26 checks for exactly this one).
pub const LIBTORCH_VERSION: &str = "2.13.0";
