//! Colour operations on `u8` images, computed as torchvision's v2 functional kernels compute
//! them on `uint8` tensors (float32 arithmetic, truncation back to `u8`), so results match to
//! the level.

use ndarray::Array3;

use crate::error::bad_image;
use crate::{Image, Result};

/// ITU-R BT.601 luma weights, as torchvision uses them.
const LUMA: [f32; 3] = [0.2989, 0.587, 0.114];

fn check_channels(op: &'static str, image: &Image, allowed: &[usize]) -> Result<usize> {
    let (h, w, c) = image.dim();
    if h == 0 || w == 0 {
        return Err(bad_image(
            op,
            format!("the image is {h}x{w}: nothing to transform"),
        ));
    }
    if !allowed.contains(&c) {
        return Err(bad_image(
            op,
            format!("needs {allowed:?} channels, the image has {c}"),
        ));
    }
    Ok(c)
}

/// `0.2989 r + 0.587 g + 0.114 b` with torchvision's rounding (`mul` then fused `add_`s).
fn luma(rgb: &[u8]) -> f32 {
    let red = f32::from(rgb[0]) * LUMA[0];
    fused(
        f32::from(rgb[2]),
        LUMA[2],
        fused(f32::from(rgb[1]), LUMA[1], red),
    )
}

/// `a * b + c` rounded once, as a fused multiply-add: the product of two f32 values is exact in
/// f64. (`f32::mul_add` is a slow library call on CPUs built without FMA.)
fn fused(a: f32, b: f32, c: f32) -> f32 {
    (f64::from(a) * f64::from(b) + f64::from(c)) as f32
}

/// `factor * x`, clamped: 0 gives black, 1 the image itself.
pub fn adjust_brightness(image: &Image, factor: f32) -> Result<Image> {
    check_channels("adjust_brightness", image, &[1, 3])?;
    Ok(image.mapv(|v| (f32::from(v) * factor).clamp(0.0, 255.0) as u8))
}

/// Blends the image with the mean of its luma: 0 gives flat grey, 1 the image itself.
pub fn adjust_contrast(image: &Image, factor: f32) -> Result<Image> {
    let c = check_channels("adjust_contrast", image, &[1, 3])?;
    let pixels = image.as_standard_layout();
    let flat = pixels.as_slice().expect("standard layout");
    let sum: f64 = if c == 3 {
        flat.chunks_exact(3)
            .map(|p| f64::from(luma(p).floor()))
            .sum()
    } else {
        flat.iter().map(|&v| f64::from(v)).sum()
    };
    let mean = (sum / (flat.len() / c) as f64) as f32;
    Ok(image.mapv(|v| blend(v, mean, factor)))
}

/// Blends the image with its luma: 0 gives grey, 1 the image itself. Gray images pass.
pub fn adjust_saturation(image: &Image, factor: f32) -> Result<Image> {
    if check_channels("adjust_saturation", image, &[1, 3])? == 1 {
        return Ok(image.clone());
    }
    Ok(map_rgb_pixels(image, |pixel| {
        let gray = luma(pixel).floor();
        for v in pixel {
            *v = blend(*v, gray, factor);
        }
    }))
}

/// A copy of an RGB image with `f` applied to every pixel's three values.
fn map_rgb_pixels(image: &Image, mut f: impl FnMut(&mut [u8])) -> Image {
    let mut out = image.as_standard_layout().into_owned();
    out.as_slice_mut()
        .expect("standard layout")
        .chunks_exact_mut(3)
        .for_each(&mut f);
    out
}

fn blend(v: u8, other: f32, ratio: f32) -> u8 {
    // torchvision computes `x * ratio` then adds `other * (1 - ratio)` in one fused step.
    fused(other, 1.0 - ratio, f32::from(v) * ratio).clamp(0.0, 255.0) as u8
}

/// Rotates the hue by `shift` turns (in `[-0.5, 0.5]`) through HSV. Gray images pass.
pub fn adjust_hue(image: &Image, shift: f32) -> Result<Image> {
    if !(-0.5..=0.5).contains(&shift) {
        return Err(bad_image(
            "adjust_hue",
            format!("the shift must be in [-0.5, 0.5], got {shift}"),
        ));
    }
    if check_channels("adjust_hue", image, &[1, 3])? == 1 {
        return Ok(image.clone());
    }
    Ok(map_rgb_pixels(image, |pixel| {
        let rgb = [
            f32::from(pixel[0]) / 255.0,
            f32::from(pixel[1]) / 255.0,
            f32::from(pixel[2]) / 255.0,
        ];
        let (h, s, v) = rgb_to_hsv(rgb);
        let h = (h + shift).rem_euclid(1.0);
        for (dst, value) in pixel.iter_mut().zip(hsv_to_rgb(h, s, v)) {
            *dst = (value * (255.0 + 1.0 - 1e-3)) as u8;
        }
    }))
}

/// Pillow's (and torchvision's) RGB -> HSV on values in `[0, 1]`.
fn rgb_to_hsv([r, g, b]: [f32; 3]) -> (f32, f32, f32) {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    if maxc == minc {
        return (0.0, 0.0, maxc);
    }
    let range = maxc - minc;
    let s = range / maxc;
    let (rc, gc, bc) = ((maxc - r) / range, (maxc - g) / range, (maxc - b) / range);
    let h = if maxc == r {
        bc - gc
    } else if maxc == g {
        2.0 + rc - bc
    } else {
        4.0 + gc - rc
    };
    ((h / 6.0 + 1.0) % 1.0, s, maxc)
}

fn hsv_to_rgb(h: f32, s: f32, v: f32) -> [f32; 3] {
    let h6 = h * 6.0;
    let i = h6.floor();
    let f = h6 - i;
    let p = (v * (1.0 - s)).clamp(0.0, 1.0);
    let q = (v * (1.0 - s * f)).clamp(0.0, 1.0);
    let t = (v * (1.0 - s + s * f)).clamp(0.0, 1.0);
    match (i as i32).rem_euclid(6) {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// Luma of an RGB image, as 1 channel or replicated to 3. Gray images pass (or are repeated).
pub fn to_grayscale(image: &Image, channels: usize) -> Result<Image> {
    let c = check_channels("to_grayscale", image, &[1, 3])?;
    if channels != 1 && channels != 3 {
        return Err(bad_image(
            "to_grayscale",
            format!("output channels must be 1 or 3, got {channels}"),
        ));
    }
    let (h, w, _) = image.dim();
    let gray = if c == 1 {
        image.clone()
    } else {
        let pixels = image.as_standard_layout();
        let values = pixels
            .as_slice()
            .expect("standard layout")
            .chunks_exact(3)
            .map(|p| luma(p) as u8)
            .collect();
        Array3::from_shape_vec((h, w, 1), values).expect("one value per pixel")
    };
    Ok(if channels == 1 {
        gray
    } else {
        Array3::from_shape_fn((h, w, 3), |(y, x, _)| gray[[y, x, 0]])
    })
}

/// Inverts every value at or above `threshold`.
pub fn solarize(image: &Image, threshold: u8) -> Result<Image> {
    check_channels("solarize", image, &[1, 2, 3, 4])?;
    Ok(image.mapv(|v| if v >= threshold { 255 - v } else { v }))
}
