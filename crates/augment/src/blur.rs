//! Gaussian blur as torchvision's `gaussian_blur` on `uint8`: a separable kernel from
//! `softmax(-(x / sigma)^2)` over `x = linspace(-l, l, k)`, `l = (k - 1) / (2 sqrt 2)`,
//! reflect padding, float32 convolution, rounding.

use ndarray::Array3;

use crate::error::bad_image;
use crate::{Image, Result};

/// The 1-D kernel torchvision uses for `kernel_size` and `sigma`.
pub fn gaussian_kernel(kernel_size: usize, sigma: f32) -> Vec<f32> {
    let lim = (kernel_size as f32 - 1.0) / (2.0 * std::f32::consts::SQRT_2);
    let steps = kernel_size.max(2) - 1;
    let logits: Vec<f32> = (0..kernel_size)
        .map(|i| {
            let x = if kernel_size == 1 {
                0.0
            } else {
                -lim + 2.0 * lim * i as f32 / steps as f32
            };
            -(x / sigma).powi(2)
        })
        .collect();
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let total: f32 = exps.iter().sum();
    exps.iter().map(|e| e / total).collect()
}

/// Reflect padding index (`dcb|abcd|cba`).
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let mut i = i;
    if n == 1 {
        return 0;
    }
    while i < 0 || i >= n {
        i = if i < 0 { -i } else { 2 * (n - 1) - i };
    }
    i as usize
}

/// Blurs with an odd `kernel_size` and `sigma > 0`.
pub fn gaussian_blur(image: &Image, kernel_size: usize, sigma: f32) -> Result<Image> {
    let (h, w, c) = image.dim();
    if h == 0 || w == 0 {
        return Err(bad_image(
            "gaussian_blur",
            format!("the image is {h}x{w}: nothing to blur"),
        ));
    }
    if kernel_size.is_multiple_of(2) || !(sigma.is_finite() && sigma > 0.0) {
        return Err(bad_image(
            "gaussian_blur",
            format!("needs an odd kernel and sigma > 0, got {kernel_size} and {sigma}"),
        ));
    }
    let half = (kernel_size / 2) as isize;
    if half as usize >= h.min(w) {
        return Err(bad_image(
            "gaussian_blur",
            format!("kernel {kernel_size} is too large for a {h}x{w} image (reflect padding)"),
        ));
    }
    let kernel = gaussian_kernel(kernel_size, sigma);
    // Horizontal pass in float, then vertical pass, then round: torchvision convolves with
    // the 2-D outer product in one go, which is the same sum in another order.
    let horizontal = Array3::from_shape_fn((h, w, c), |(y, x, ch)| {
        kernel
            .iter()
            .enumerate()
            .map(|(k, wgt)| {
                wgt * f32::from(image[[y, reflect(x as isize + k as isize - half, w), ch]])
            })
            .sum::<f32>()
    });
    Ok(Array3::from_shape_fn((h, w, c), |(y, x, ch)| {
        let v: f32 = kernel
            .iter()
            .enumerate()
            .map(|(k, wgt)| wgt * horizontal[[reflect(y as isize + k as isize - half, h), x, ch]])
            .sum();
        v.round().clamp(0.0, 255.0) as u8
    }))
}
