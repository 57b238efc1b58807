//! Conversions between images (`u8`, height x width x channels) and float tensors
//! (channels x height x width, values in `[0, 1]`), batch stacking and normalisation.
//!
//! Images are `ndarray` arrays of shape `[H, W, C]`, the layout `contrastive-data` produces
//! (which also bridges to the `image` crate).

use ndarray::{Array3, ArrayView3};
use tch::{Device, Kind, Tensor};

use crate::{Error, Result, array_from_tensor_dim, tensor_from_array};

/// Converts a `u8` image `[H, W, C]` into a float tensor `[C, H, W]` with values in `[0, 1]`.
///
/// ```
/// use ndarray::Array3;
/// let img = Array3::<u8>::from_elem((28, 28, 1), 255);
/// let t = contrastive_tensor::tensor_from_hwc(img.view());
/// assert_eq!(t.size(), [1, 28, 28]);
/// assert_eq!(t.max().double_value(&[]), 1.0);
/// ```
pub fn tensor_from_hwc(image: ArrayView3<'_, u8>) -> Tensor {
    u8_to_unit_float(&tensor_from_array(&image).permute([2, 0, 1]))
}

/// Converts a float tensor `[C, H, W]` with values in `[0, 1]` back into a `u8` image
/// `[H, W, C]`, rounding to the nearest level and clamping values outside `[0, 1]`.
///
/// The round trip `hwc_from_tensor(&tensor_from_hwc(img))` gives back `img` exactly.
pub fn hwc_from_tensor(tensor: &Tensor) -> Result<Array3<u8>> {
    check_chw(tensor, "hwc_from_tensor")?;
    let levels = (tensor.to_kind(Kind::Float) * 255.0)
        .round()
        .clamp(0.0, 255.0);
    array_from_tensor_dim(&levels.to_kind(Kind::Uint8).permute([1, 2, 0]))
}

/// Stacks images of one shape `[H, W, C]` into a `u8` tensor `[N, C, H, W]`.
///
/// Keeping batches in `u8` until they reach the device moves a quarter of the bytes; convert
/// there with [`u8_to_unit_float`] and [`Normalize::apply`].
pub fn stack_hwc_u8(images: &[ArrayView3<'_, u8>]) -> Result<Tensor> {
    let first = images.first().ok_or_else(|| Error::ShapeMismatch {
        op: "stack_hwc_u8",
        expected: "at least one image".into(),
        actual: vec![0],
    })?;
    let shape = first.shape();
    if !(1..=4).contains(&shape[2]) {
        return Err(Error::ShapeMismatch {
            op: "stack_hwc_u8",
            expected: "[H, W, C] with C in 1..=4".into(),
            actual: to_i64(shape),
        });
    }
    let mut bytes = Vec::with_capacity(images.len() * first.len());
    for (i, image) in images.iter().enumerate() {
        if image.shape() != shape {
            return Err(Error::ShapeMismatch {
                op: "stack_hwc_u8",
                expected: format!("image {i} to have the shape of image 0, {shape:?}"),
                actual: to_i64(image.shape()),
            });
        }
        match image.as_slice() {
            Some(slice) => bytes.extend_from_slice(slice),
            None => bytes.extend(image.iter().copied()),
        }
    }
    let (h, w, c) = (shape[0] as i64, shape[1] as i64, shape[2] as i64);
    Ok(Tensor::from_slice(&bytes)
        .view([images.len() as i64, h, w, c])
        .permute([0, 3, 1, 2]))
}

/// Stacks images of one shape `[H, W, C]` into a float tensor `[N, C, H, W]` in `[0, 1]`.
pub fn stack_hwc(images: &[ArrayView3<'_, u8>]) -> Result<Tensor> {
    stack_hwc_u8(images).map(|t| u8_to_unit_float(&t))
}

/// Splits a float batch `[N, C, H, W]` in `[0, 1]` into `u8` images `[H, W, C]`.
pub fn unstack_to_hwc(batch: &Tensor) -> Result<Vec<Array3<u8>>> {
    if batch.dim() != 4 {
        return Err(Error::ShapeMismatch {
            op: "unstack_to_hwc",
            expected: "[N, C, H, W]".into(),
            actual: batch.size(),
        });
    }
    (0..batch.size()[0])
        .map(|i| hwc_from_tensor(&batch.get(i)))
        .collect()
}

/// Converts a `u8` tensor of any shape into `f32` values divided by 255, on its own device.
pub fn u8_to_unit_float(tensor: &Tensor) -> Tensor {
    tensor.to_kind(Kind::Float) / 255.0
}

/// Per-channel normalisation `(x - mean) / std`, as torchvision's `Normalize`.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalize {
    mean: Vec<f32>,
    std: Vec<f32>,
}

impl Normalize {
    /// Builds a normalisation; `mean` and `std` must have one (equal) length per channel, and
    /// every `std` must be finite and positive.
    ///
    /// ```
    /// use contrastive_tensor::Normalize;
    /// // Fashion-MNIST statistics.
    /// let norm = Normalize::new(vec![0.2860], vec![0.3530]).unwrap();
    /// assert!(Normalize::new(vec![0.5], vec![0.0]).is_err());
    /// # let _ = norm;
    /// ```
    pub fn new(mean: Vec<f32>, std: Vec<f32>) -> Result<Self> {
        if mean.is_empty() || mean.len() != std.len() {
            return Err(Error::InvalidNormalize(format!(
                "mean has {} values and std {}; both need one per channel",
                mean.len(),
                std.len()
            )));
        }
        if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(Error::InvalidNormalize(format!(
                "std must be finite and > 0, got {s}"
            )));
        }
        if let Some(m) = mean.iter().find(|m| !m.is_finite()) {
            return Err(Error::InvalidNormalize(format!(
                "mean must be finite, got {m}"
            )));
        }
        Ok(Self { mean, std })
    }

    /// Number of channels this normalisation expects.
    pub fn channels(&self) -> usize {
        self.mean.len()
    }

    /// Normalises a float tensor `[C, H, W]` or `[N, C, H, W]` on its own device.
    pub fn apply(&self, tensor: &Tensor) -> Result<Tensor> {
        let (mean, std) = self.broadcast(tensor, "Normalize::apply")?;
        Ok((tensor - mean) / std)
    }

    /// Undoes [`Normalize::apply`], for showing normalised tensors as pictures.
    pub fn invert(&self, tensor: &Tensor) -> Result<Tensor> {
        let (mean, std) = self.broadcast(tensor, "Normalize::invert")?;
        Ok(tensor * std + mean)
    }

    fn broadcast(&self, tensor: &Tensor, op: &'static str) -> Result<(Tensor, Tensor)> {
        let size = tensor.size();
        let channel_axis = match size.len() {
            3 => 0,
            4 => 1,
            _ => usize::MAX,
        };
        if size.get(channel_axis) != Some(&(self.channels() as i64)) {
            return Err(Error::ShapeMismatch {
                op,
                expected: format!("[C, H, W] or [N, C, H, W] with C = {}", self.channels()),
                actual: size,
            });
        }
        let device: Device = tensor.device();
        let column = |values: &[f32]| {
            Tensor::from_slice(values)
                .to_device(device)
                .to_kind(tensor.kind())
                .view([-1, 1, 1])
        };
        Ok((column(&self.mean), column(&self.std)))
    }
}

fn check_chw(tensor: &Tensor, op: &'static str) -> Result<()> {
    let size = tensor.size();
    if size.len() == 3 && (1..=4).contains(&size[0]) {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            op,
            expected: "[C, H, W] with C in 1..=4".into(),
            actual: size,
        })
    }
}

fn to_i64(shape: &[usize]) -> Vec<i64> {
    shape.iter().map(|&d| d as i64).collect()
}
