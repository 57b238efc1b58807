//! Channels-last (NHWC) memory layout, which convolutions on CPUs and tensor-core GPUs run
//! fastest in. Shapes stay `[N, C, H, W]`; only the strides change.

use tch::{Tensor, nn::VarStore};

use crate::{Result, ffi};

/// The same values laid out channels-last. 4-D tensors only; other ranks are returned as they
/// are (a shallow copy), which is what a module conversion wants for biases and norms.
pub fn to_channels_last(tensor: &Tensor) -> Result<Tensor> {
    if tensor.dim() == 4 {
        ffi::contiguous_format(tensor, true)
    } else {
        Ok(tensor.shallow_clone())
    }
}

/// The same values in the default contiguous (NCHW) layout.
pub fn to_contiguous(tensor: &Tensor) -> Result<Tensor> {
    ffi::contiguous_format(tensor, false)
}

/// Whether a tensor's strides are channels-last.
pub fn is_channels_last(tensor: &Tensor) -> Result<bool> {
    if tensor.dim() != 4 {
        return Ok(false);
    }
    ffi::is_channels_last(tensor)
}

/// Converts every 4-D variable of `vs` (convolution weights) to channels-last in place, as
/// `model.to(memory_format=torch.channels_last)` does. Do it before building the optimiser.
pub fn var_store_to_channels_last(vs: &VarStore) -> Result<()> {
    tch::no_grad(|| {
        for (_, mut variable) in vs.variables() {
            if variable.dim() == 4 {
                let converted = to_channels_last(&variable)?;
                variable.set_data(&converted);
            }
        }
        Ok(())
    })
}
