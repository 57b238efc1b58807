//! Gaussian blur as torchvision's `gaussian_blur` on `uint8`: a separable kernel from
//! `softmax(-(x / sigma)^2)` over `x = linspace(-l, l, k)`, `l = (k - 1) / (2 sqrt 2)`,
//! reflect padding, float32 convolution, rounding.

use ndarray::Array3;

use crate::error::bad_image;
use crate::float::round_to_u8;
use crate::simd::weighted_rows;
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
    let source = image.as_standard_layout();
    let source = source.as_slice().expect("standard layout");
    let (row_len, half) = (w * c, half as usize);
    // Horizontal pass: each row reflect-padded into floats, then the taps are the padded row
    // shifted by one pixel each. Vertical pass: the taps are the reflected rows above and
    // below. Both add the taps in kernel order.
    let mut horizontal = vec![0.0f32; h * row_len];
    let mut padded = vec![0.0f32; (w + 2 * half) * c];
    for (row, out) in source
        .chunks_exact(row_len)
        .zip(horizontal.chunks_exact_mut(row_len))
    {
        for px in 0..w + 2 * half {
            let from = reflect(px as isize - half as isize, w) * c;
            for ch in 0..c {
                padded[px * c + ch] = f32::from(row[from + ch]);
            }
        }
        let taps: Vec<&[f32]> = (0..kernel_size).map(|k| &padded[k * c..]).collect();
        weighted_rows(&kernel, &taps, out);
    }
    let mut result = vec![0u8; h * row_len];
    let mut acc = vec![0.0f32; row_len];
    for (y, out) in result.chunks_exact_mut(row_len).enumerate() {
        let taps: Vec<&[f32]> = (0..kernel_size)
            .map(|k| {
                let src_row = reflect(y as isize + k as isize - half as isize, h);
                &horizontal[src_row * row_len..(src_row + 1) * row_len]
            })
            .collect();
        weighted_rows(&kernel, &taps, &mut acc);
        for (dst, &a) in out.iter_mut().zip(&acc) {
            *dst = round_to_u8(a);
        }
    }
    Ok(Array3::from_shape_vec((h, w, c), result).expect("one value per pixel and channel"))
}
