//! Conversions between `ndarray` arrays and tensors. Values are copied; shapes are kept.

use ndarray::{Array, ArrayBase, ArrayD, Data, Dimension, IxDyn};
use tch::{Device, Tensor, kind::Element};

use crate::{Error, Result};

/// Copies an array into a new CPU tensor of the same shape and element type.
///
/// Works for any layout (views, slices, transposed arrays); the tensor is contiguous.
///
/// ```
/// use ndarray::array;
/// let t = contrastive_tensor::tensor_from_array(&array![[1.0f32, 2.0], [3.0, 4.0]]);
/// assert_eq!(t.size(), [2, 2]);
/// ```
pub fn tensor_from_array<T, S, D>(array: &ArrayBase<S, D>) -> Tensor
where
    T: Element + Copy,
    S: Data<Elem = T>,
    D: Dimension,
{
    let shape: Vec<i64> = array.shape().iter().map(|&d| d as i64).collect();
    let flat = match array.as_slice() {
        Some(slice) => Tensor::from_slice(slice),
        None => Tensor::from_slice(&array.iter().copied().collect::<Vec<T>>()),
    };
    flat.reshape(&shape)
}

/// Copies a tensor (on any device, any layout) into an array of any rank.
///
/// The tensor's kind must match `T` exactly (`f32` for `Kind::Float`, `u8` for
/// `Kind::Uint8`, ...); converting kinds is left to the caller, so no precision is lost
/// silently.
pub fn array_from_tensor<T: Element>(tensor: &Tensor) -> Result<ArrayD<T>> {
    if tensor.kind() != T::KIND {
        return Err(Error::KindMismatch {
            op: "array_from_tensor",
            expected: T::KIND,
            actual: tensor.kind(),
        });
    }
    let shape: Vec<usize> = tensor.size().iter().map(|&d| d as usize).collect();
    let cpu = tensor.to_device(Device::Cpu).contiguous();
    let numel = cpu.numel();
    let mut values = vec![T::ZERO; numel];
    cpu.f_copy_data(&mut values, numel)?;
    Ok(ArrayD::from_shape_vec(IxDyn(&shape), values).expect("numel matches shape"))
}

/// Like [`array_from_tensor`], with the rank checked: `array_from_tensor_dim::<f32, Ix2>`
/// fails with [`Error::ShapeMismatch`] on a tensor that is not 2-D.
pub fn array_from_tensor_dim<T: Element, D: Dimension>(tensor: &Tensor) -> Result<Array<T, D>> {
    let array = array_from_tensor::<T>(tensor)?;
    let actual = tensor.size();
    array
        .into_dimensionality::<D>()
        .map_err(|_| Error::ShapeMismatch {
            op: "array_from_tensor_dim",
            expected: format!(
                "a tensor of rank {}",
                D::NDIM.map_or("any".into(), |n| n.to_string())
            ),
            actual,
        })
}

/// Lends the values of a contiguous CPU `f32` tensor as a slice, without copying, for the
/// length of `f`. Panics (naming the op and the tensor) when the tensor is not contiguous
/// `f32` on the CPU. The tensor must not be written through another handle meanwhile.
///
/// ```
/// use contrastive_tensor::{Tensor, with_f32_slice};
/// let t = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
/// assert_eq!(with_f32_slice(&t, |v| v.iter().sum::<f32>()), 6.0);
/// ```
pub fn with_f32_slice<R>(tensor: &Tensor, f: impl FnOnce(&[f32]) -> R) -> R {
    with_slice(tensor, tch::Kind::Float, "with_f32_slice", f)
}

/// [`with_f32_slice`] for a `bf16` tensor: its values as raw bits (the upper half of the
/// `f32` they round; `f32::from_bits((b as u32) << 16)` widens one exactly).
///
/// ```
/// use contrastive_tensor::{Kind, Tensor, with_bf16_bits};
/// let t = Tensor::from_slice(&[1.5f32, -2.0]).to_kind(Kind::BFloat16);
/// let back = with_bf16_bits(&t, |b| b.iter().map(|&b| f32::from_bits((b as u32) << 16)).collect::<Vec<_>>());
/// assert_eq!(back, [1.5, -2.0]);
/// ```
pub fn with_bf16_bits<R>(tensor: &Tensor, f: impl FnOnce(&[u16]) -> R) -> R {
    with_slice(tensor, tch::Kind::BFloat16, "with_bf16_bits", f)
}

/// The values of a contiguous CPU tensor of `kind`, whose elements are `T`-sized.
fn with_slice<T, R>(tensor: &Tensor, kind: tch::Kind, op: &str, f: impl FnOnce(&[T]) -> R) -> R {
    assert!(
        tensor.kind() == kind && tensor.device() == Device::Cpu && tensor.is_contiguous(),
        "{op}: needs a contiguous {kind:?} CPU tensor, got {:?} {:?} of shape {:?} \
         (contiguous: {})",
        tensor.kind(),
        tensor.device(),
        tensor.size(),
        tensor.is_contiguous()
    );
    debug_assert_eq!(kind.elt_size_in_bytes(), std::mem::size_of::<T>());
    let len = tensor.numel();
    if len == 0 {
        return f(&[]);
    }
    // SAFETY: the tensor is a contiguous CPU tensor of `len` elements of `kind`, whose size
    // is that of `T` (plain numbers, any bit pattern valid), so its data pointer addresses
    // `len` initialised, aligned `T`; `tensor` is borrowed for the whole call, so its
    // storage outlives the slice, and the contract above rules out writes through other
    // handles while `f` runs.
    let values = unsafe { std::slice::from_raw_parts(tensor.data_ptr() as *const T, len) };
    f(values)
}
