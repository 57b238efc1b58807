//! Geometric operations on `u8` images `[H, W, C]`: flips, crops and antialiased bilinear
//! resizing as torchvision's `resize(..., antialias=True)` does on `uint8` tensors (Pillow's
//! separable triangle filter, horizontal pass first).

use ndarray::{Array3, Axis, s};

use crate::error::bad_image;
use crate::{Image, Result};

fn check_size(op: &'static str, image: &Image) -> Result<(usize, usize, usize)> {
    let (h, w, c) = image.dim();
    if h == 0 || w == 0 || c == 0 {
        return Err(bad_image(
            op,
            format!("the image is {h}x{w}x{c}: nothing to transform"),
        ));
    }
    Ok((h, w, c))
}

/// Mirrors left to right.
pub fn hflip(image: &Image) -> Image {
    image.slice(s![.., ..;-1, ..]).to_owned()
}

/// Mirrors top to bottom.
pub fn vflip(image: &Image) -> Image {
    image.slice(s![..;-1, .., ..]).to_owned()
}

/// The `height` x `width` window whose top-left corner is (`top`, `left`); it must lie inside.
pub fn crop(image: &Image, top: usize, left: usize, height: usize, width: usize) -> Result<Image> {
    let (h, w, _) = check_size("crop", image)?;
    if height == 0 || width == 0 || top + height > h || left + width > w {
        return Err(bad_image(
            "crop",
            format!("a {height}x{width} window at ({top}, {left}) does not fit a {h}x{w} image"),
        ));
    }
    Ok(image
        .slice(s![top..top + height, left..left + width, ..])
        .to_owned())
}

/// The centre `height` x `width` window (rounding as torchvision's `center_crop`).
pub fn center_crop(image: &Image, height: usize, width: usize) -> Result<Image> {
    let (h, w, _) = check_size("center_crop", image)?;
    if height > h || width > w {
        return Err(bad_image(
            "center_crop",
            format!("{height}x{width} is larger than the {h}x{w} image"),
        ));
    }
    let top = ((h - height) as f64 / 2.0).round() as usize;
    let left = ((w - width) as f64 / 2.0).round() as usize;
    crop(image, top, left, height, width)
}

/// Resizes to `height` x `width` with bilinear interpolation, antialiased when shrinking.
pub fn resize(image: &Image, height: usize, width: usize) -> Result<Image> {
    let (h, w, _) = check_size("resize", image)?;
    if height == 0 || width == 0 {
        return Err(bad_image(
            "resize",
            format!("cannot resize to {height}x{width}"),
        ));
    }
    let mut out = image.as_standard_layout().into_owned();
    if width != w {
        out = resample_axis(&out, Axis(1), width);
    }
    if height != h {
        out = resample_axis(&out, Axis(0), height);
    }
    Ok(out)
}

/// Crops the window at (`top`, `left`) of `height` x `width`, then resizes it to
/// `out_height` x `out_width`: torchvision's `resized_crop`.
pub fn resized_crop(
    image: &Image,
    (top, left, height, width): (usize, usize, usize, usize),
    (out_height, out_width): (usize, usize),
) -> Result<Image> {
    resize(
        &crop(image, top, left, height, width)?,
        out_height,
        out_width,
    )
}

/// For each output position along an axis of `input` source positions, the first source
/// index and the normalised triangle-filter weights (Pillow's `precompute_coeffs`).
fn coefficients(input: usize, output: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = input as f64 / output as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // the triangle filter has support 1
    (0..output)
        .map(|o| {
            let center = (o as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5).floor().max(0.0)) as usize;
            let xmax = ((center + support + 0.5).floor() as usize).min(input);
            let weights: Vec<f64> = (xmin..xmax)
                .map(|x| {
                    let t = ((x as f64 - center + 0.5) / filter_scale).abs();
                    if t < 1.0 { 1.0 - t } else { 0.0 }
                })
                .collect();
            let total: f64 = weights.iter().sum();
            (xmin, weights.iter().map(|w| (w / total) as f32).collect())
        })
        .collect()
}

/// Resamples one axis (0: rows, 1: columns) to `output` positions, rounding to `u8`. Taps are
/// added in order with float32 weights.
fn resample_axis(image: &Array3<u8>, axis: Axis, output: usize) -> Array3<u8> {
    let (h, w, c) = image.dim();
    let source = image.as_slice().expect("standard layout");
    let coeffs = coefficients(image.len_of(axis), output);
    if axis == Axis(1) {
        let mut out = Vec::with_capacity(h * output * c);
        let mut acc = vec![0.0f32; c];
        for row in source.chunks_exact(w * c) {
            for (start, weights) in &coeffs {
                acc.fill(0.0);
                for (k, weight) in weights.iter().enumerate() {
                    let pixel = &row[(start + k) * c..(start + k + 1) * c];
                    for (a, &v) in acc.iter_mut().zip(pixel) {
                        *a += weight * f32::from(v);
                    }
                }
                out.extend(acc.iter().map(|a| a.round().clamp(0.0, 255.0) as u8));
            }
        }
        Array3::from_shape_vec((h, output, c), out).expect("one value per pixel and channel")
    } else {
        let row_len = w * c;
        let mut out = Vec::with_capacity(output * row_len);
        let mut acc = vec![0.0f32; row_len];
        for (start, weights) in &coeffs {
            acc.fill(0.0);
            for (k, weight) in weights.iter().enumerate() {
                let row = &source[(start + k) * row_len..(start + k + 1) * row_len];
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += weight * f32::from(v);
                }
            }
            out.extend(acc.iter().map(|a| a.round().clamp(0.0, 255.0) as u8));
        }
        Array3::from_shape_vec((output, w, c), out).expect("one value per pixel and channel")
    }
}
