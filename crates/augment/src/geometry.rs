//! Geometric operations on `u8` images `[H, W, C]`: flips, crops and antialiased bilinear
//! resizing as torchvision's `resize(..., antialias=True)` does on `uint8` tensors (Pillow's
//! separable triangle filter, horizontal pass first).

use ndarray::{Array3, Axis, s};

use crate::error::bad_image;
use crate::float::round_to_u8;
use crate::simd::{self, Vectorised, weighted_rows};
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
    let (h, w, c) = image.dim();
    let source = image.as_standard_layout();
    let mut out = Vec::with_capacity(h * w * c);
    if c > 0 {
        for row in source
            .as_slice()
            .expect("standard layout")
            .chunks_exact(w * c)
        {
            for pixel in row.rchunks_exact(c) {
                out.extend_from_slice(pixel);
            }
        }
    }
    Array3::from_shape_vec((h, w, c), out).expect("one value per pixel and channel")
}

/// Mirrors top to bottom.
pub fn vflip(image: &Image) -> Image {
    let (h, w, c) = image.dim();
    let source = image.as_standard_layout();
    let mut out = Vec::with_capacity(h * w * c);
    if w * c > 0 {
        for row in source
            .as_slice()
            .expect("standard layout")
            .rchunks_exact(w * c)
        {
            out.extend_from_slice(row);
        }
    }
    Array3::from_shape_vec((h, w, c), out).expect("one value per pixel and channel")
}

/// The rows `top..top + height`, columns `left..left + width` of `image`, copied row by row
/// (ndarray copies a non-contiguous window value by value).
fn window(image: &Image, top: usize, left: usize, height: usize, width: usize) -> Image {
    let (_, w, c) = image.dim();
    let source = image.as_standard_layout();
    let values = source.as_slice().expect("standard layout");
    let mut out = Vec::with_capacity(height * width * c);
    for y in top..top + height {
        let start = (y * w + left) * c;
        out.extend_from_slice(&values[start..start + width * c]);
    }
    Array3::from_shape_vec((height, width, c), out).expect("one value per pixel and channel")
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
    Ok(window(image, top, left, height, width))
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

/// Resampling filters, as Pillow and torchvision define them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Interpolation {
    /// Triangle filter (support 1).
    #[default]
    Bilinear,
    /// Cubic convolution with a = -0.5 (support 2); may ring, values are clamped.
    Bicubic,
}

impl Interpolation {
    fn support(self) -> f64 {
        match self {
            Interpolation::Bilinear => 1.0,
            Interpolation::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Interpolation::Bilinear => (1.0 - x).max(0.0),
            Interpolation::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// Resizes to `height` x `width` with bilinear interpolation, antialiased when shrinking.
pub fn resize(image: &Image, height: usize, width: usize) -> Result<Image> {
    resize_with(image, height, width, Interpolation::Bilinear)
}

/// Resizes to `height` x `width` with the given filter, antialiased when shrinking (as
/// torchvision's `resize(..., antialias=True)` and Pillow).
pub fn resize_with(
    image: &Image,
    height: usize,
    width: usize,
    filter: Interpolation,
) -> Result<Image> {
    let (h, w, _) = check_size("resize", image)?;
    if height == 0 || width == 0 {
        return Err(bad_image(
            "resize",
            format!("cannot resize to {height}x{width}"),
        ));
    }
    let source = image.as_standard_layout();
    let values = source.as_slice().expect("standard layout");
    Ok(match (width != w, height != h) {
        (false, false) => source.into_owned(),
        (true, false) => resample_axis(values, image.dim(), Axis(1), width, filter),
        (false, true) => resample_axis(values, image.dim(), Axis(0), height, filter),
        (true, true) => {
            let horizontal = resample_axis(values, image.dim(), Axis(1), width, filter);
            let values = horizontal.as_slice().expect("standard layout");
            resample_axis(values, horizontal.dim(), Axis(0), height, filter)
        }
    })
}

/// Crops the window at (`top`, `left`) of `height` x `width`, then resizes it to
/// `out_height` x `out_width` (bilinear): torchvision's `resized_crop`.
pub fn resized_crop(
    image: &Image,
    window: (usize, usize, usize, usize),
    size: (usize, usize),
) -> Result<Image> {
    resized_crop_with(image, window, size, Interpolation::Bilinear)
}

/// [`resized_crop`] with a chosen filter.
pub fn resized_crop_with(
    image: &Image,
    (top, left, height, width): (usize, usize, usize, usize),
    (out_height, out_width): (usize, usize),
    filter: Interpolation,
) -> Result<Image> {
    resize_with(
        &crop(image, top, left, height, width)?,
        out_height,
        out_width,
        filter,
    )
}

/// For each output position along an axis of `input` source positions, the first source
/// index and the normalised filter weights (Pillow's `precompute_coeffs`).
fn coefficients(input: usize, output: usize, filter: Interpolation) -> Vec<(usize, Vec<f32>)> {
    let scale = input as f64 / output as f64;
    let filter_scale = scale.max(1.0);
    let support = filter.support() * filter_scale;
    (0..output)
        .map(|o| {
            let center = (o as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5).floor().max(0.0)) as usize;
            let xmax = ((center + support + 0.5).floor() as usize).min(input);
            let weights: Vec<f64> = (xmin..xmax)
                .map(|x| filter.weight((x as f64 - center + 0.5) / filter_scale))
                .collect();
            let total: f64 = weights.iter().sum();
            (xmin, weights.iter().map(|w| (w / total) as f32).collect())
        })
        .collect()
}

/// Filter weights padded with zeros to `K` taps, the window moved left where it would run
/// past the end: adding `0 * v` leaves every sum as it was, and a fixed tap count lets the
/// inner loops unroll.
fn padded<const K: usize>(coeffs: &[(usize, Vec<f32>)], input: usize) -> Vec<(usize, [f32; K])> {
    coeffs
        .iter()
        .map(|(start, weights)| {
            let first = (*start).min(input.saturating_sub(K));
            let mut fixed = [0.0f32; K];
            fixed[start - first..start - first + weights.len()].copy_from_slice(weights);
            (first, fixed)
        })
        .collect()
}

/// Rows resampled along their width, `C` interleaved channels and `K` taps (fixed counts, so
/// the loops unroll; compiled for AVX2 where the CPU has it).
struct Horizontal<'a, const C: usize, const K: usize> {
    source: &'a [u8],
    row_len: usize,
    coeffs: &'a [(usize, [f32; K])],
    out: &'a mut Vec<u8>,
}

impl<const C: usize, const K: usize> Vectorised for Horizontal<'_, C, K> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let mut row = vec![0.0f32; self.row_len];
        for values in self.source.chunks_exact(self.row_len) {
            for (dst, &v) in row.iter_mut().zip(values) {
                *dst = f32::from(v);
            }
            for (start, weights) in self.coeffs {
                let pixels = &row[start * C..(start + K) * C];
                let mut acc = [0.0f32; C];
                for (k, weight) in weights.iter().enumerate() {
                    for ch in 0..C {
                        acc[ch] += weight * pixels[k * C + ch];
                    }
                }
                self.out.extend(acc.iter().map(|&a| round_to_u8(a)));
            }
        }
    }
}

/// [`Horizontal`] for any channel and tap count.
fn horizontal_any(row: &[f32], c: usize, coeffs: &[(usize, Vec<f32>)], out: &mut Vec<u8>) {
    let mut acc = vec![0.0f32; c];
    for (start, weights) in coeffs {
        acc.fill(0.0);
        for (k, weight) in weights.iter().enumerate() {
            for (a, v) in acc
                .iter_mut()
                .zip(&row[(start + k) * c..(start + k + 1) * c])
            {
                *a += weight * v;
            }
        }
        out.extend(acc.iter().map(|&a| round_to_u8(a)));
    }
}

/// Resamples every row (`c` channels) along its width with `coeffs`, through an unrolled
/// [`Horizontal`] where the channel count is 1, 3 or 4 and at most 8 taps are needed.
fn resample_rows(source: &[u8], row_len: usize, c: usize, coeffs: &[(usize, Vec<f32>)]) -> Vec<u8> {
    let input = row_len / c;
    let taps = coeffs.iter().map(|(_, w)| w.len()).max().unwrap_or(0);
    let mut out = Vec::with_capacity(source.len() / input * coeffs.len());
    macro_rules! rows_with {
        ($c:literal, $k:literal) => {
            simd::run(Horizontal::<$c, $k> {
                source,
                row_len,
                coeffs: &padded::<$k>(coeffs, input),
                out: &mut out,
            })
        };
    }
    match (c, taps) {
        (1, ..=2) if input >= 2 => rows_with!(1, 2),
        (1, ..=4) if input >= 4 => rows_with!(1, 4),
        (1, ..=8) if input >= 8 => rows_with!(1, 8),
        (3, ..=2) if input >= 2 => rows_with!(3, 2),
        (3, ..=4) if input >= 4 => rows_with!(3, 4),
        (3, ..=8) if input >= 8 => rows_with!(3, 8),
        (4, ..=2) if input >= 2 => rows_with!(4, 2),
        (4, ..=4) if input >= 4 => rows_with!(4, 4),
        (4, ..=8) if input >= 8 => rows_with!(4, 8),
        _ => {
            let mut row_f32 = vec![0.0f32; row_len];
            for row in source.chunks_exact(row_len) {
                for (dst, &v) in row_f32.iter_mut().zip(row) {
                    *dst = f32::from(v);
                }
                horizontal_any(&row_f32, c, coeffs, &mut out);
            }
        }
    }
    out
}

/// Resamples one axis (0: rows, 1: columns) of the `(h, w, c)` image whose values are
/// `source` (row-major) to `output` positions, rounding to `u8`. Taps are added in order with
/// float32 weights.
fn resample_axis(
    source: &[u8],
    (h, w, c): (usize, usize, usize),
    axis: Axis,
    output: usize,
    filter: Interpolation,
) -> Array3<u8> {
    let coeffs = coefficients(if axis == Axis(0) { h } else { w }, output, filter);
    if axis == Axis(1) {
        let out = resample_rows(source, w * c, c, &coeffs);
        Array3::from_shape_vec((h, output, c), out).expect("one value per pixel and channel")
    } else {
        let row_len = w * c;
        let mut out = Vec::with_capacity(output * row_len);
        let mut acc = vec![0.0f32; row_len];
        for (start, weights) in &coeffs {
            let taps: Vec<&[u8]> = (0..weights.len())
                .map(|k| &source[(start + k) * row_len..(start + k + 1) * row_len])
                .collect();
            weighted_rows(weights, &taps, &mut acc);
            out.extend(acc.iter().map(|&a| round_to_u8(a)));
        }
        Array3::from_shape_vec((output, w, c), out).expect("one value per pixel and channel")
    }
}

/// How a warp ([`affine_with`], [`rotate_with`]) reads the source image between pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sampling {
    /// The nearest source pixel (torchvision's default for `affine` and `rotate`).
    #[default]
    Nearest,
    /// Bilinear between the four nearest source pixels, as torchvision's
    /// `InterpolationMode.BILINEAR` (`grid_sample`, zeros outside, then blended with the
    /// fill by the in-image weight).
    Bilinear,
}

/// An affine warp of the image about its centre with nearest-neighbour sampling (the default
/// interpolation of torchvision's `affine`, `RandomAffine` and `RandomRotation`): rotation by
/// `angle` degrees (counter-clockwise, as torchvision's `affine`), translation by
/// `translate` pixels `(x, y)`, `scale`, and shear `(x, y)` in degrees. Pixels that come from
/// outside the image take `fill` (one value per channel, or one for all).
pub fn affine(
    image: &Image,
    angle: f64,
    translate: (f64, f64),
    scale: f64,
    shear: (f64, f64),
    fill: &[u8],
) -> Result<Image> {
    affine_with(
        image,
        angle,
        translate,
        scale,
        shear,
        fill,
        Sampling::Nearest,
    )
}

/// [`affine`] with a choice of [`Sampling`].
pub fn affine_with(
    image: &Image,
    angle: f64,
    translate: (f64, f64),
    scale: f64,
    shear: (f64, f64),
    fill: &[u8],
    sampling: Sampling,
) -> Result<Image> {
    let (h, w, c) = check_size("affine", image)?;
    if !(scale.is_finite() && scale > 0.0) {
        return Err(bad_image(
            "affine",
            format!("scale must be > 0, got {scale}"),
        ));
    }
    if fill.len() != 1 && fill.len() != c {
        return Err(bad_image(
            "affine",
            format!("fill needs 1 or {c} values, got {}", fill.len()),
        ));
    }
    let fill_of = |ch: usize| fill[ch.min(fill.len() - 1)];
    let m = inverse_affine_matrix(angle, translate, scale, shear);
    let source = image.as_standard_layout();
    let mut out = Vec::with_capacity(h * w * c);
    for yo in 0..h {
        for xo in 0..w {
            let (sx, sy) = affine_source(&m, (h, w), (yo, xo));
            match sampling {
                Sampling::Nearest => {
                    // Rounding half to even, as libtorch's nearbyint does.
                    let (ix, iy) = (sx.round_ties_even(), sy.round_ties_even());
                    if ix >= 0.0 && iy >= 0.0 && (ix as usize) < w && (iy as usize) < h {
                        out.extend(source.slice(s![iy as usize, ix as usize, ..]).iter());
                    } else {
                        out.extend((0..c).map(fill_of));
                    }
                }
                Sampling::Bilinear => {
                    let (x0, y0) = (sx.floor(), sy.floor());
                    let (fx, fy) = (sx - x0, sy - y0);
                    let corners = [
                        (x0, y0, (1.0 - fx) * (1.0 - fy)),
                        (x0 + 1.0, y0, fx * (1.0 - fy)),
                        (x0, y0 + 1.0, (1.0 - fx) * fy),
                        (x0 + 1.0, y0 + 1.0, fx * fy),
                    ];
                    let inside = |cx: f64, cy: f64| {
                        cx >= 0.0 && cy >= 0.0 && (cx as usize) < w && (cy as usize) < h
                    };
                    // The in-image weight: what torchvision's sampled mask channel holds.
                    let mask: f64 = corners
                        .iter()
                        .filter(|(cx, cy, _)| inside(*cx, *cy))
                        .map(|(_, _, wgt)| wgt)
                        .sum();
                    for ch in 0..c {
                        let sampled: f64 = corners
                            .iter()
                            .filter(|(cx, cy, _)| inside(*cx, *cy))
                            .map(|(cx, cy, wgt)| {
                                wgt * f64::from(source[[*cy as usize, *cx as usize, ch]])
                            })
                            .sum();
                        let f = f64::from(fill_of(ch));
                        let v = mask * (sampled - f) + f;
                        out.push(v.round_ties_even().clamp(0.0, 255.0) as u8);
                    }
                }
            }
        }
    }
    Ok(Array3::from_shape_vec((h, w, c), out).expect("one value per pixel and channel"))
}

/// Rotates by `angle` degrees counter-clockwise about the centre, keeping the size (as
/// torchvision's `rotate` with `expand=False`, nearest).
pub fn rotate(image: &Image, angle: f64, fill: &[u8]) -> Result<Image> {
    rotate_with(image, angle, fill, Sampling::Nearest)
}

/// [`rotate`] with a choice of [`Sampling`].
pub fn rotate_with(image: &Image, angle: f64, fill: &[u8], sampling: Sampling) -> Result<Image> {
    // torchvision's rotate builds its matrix from -angle where affine uses angle.
    affine_with(image, -angle, (0.0, 0.0), 1.0, (0.0, 0.0), fill, sampling).map_err(|e| match e {
        crate::Error::BadImage { message, .. } => bad_image("rotate", message),
        other => other,
    })
}

/// Where output pixel `(yo, xo)` of an `(h, w)` image reads the source under the output-to-
/// input matrix `m` ([`inverse_affine_matrix`]): source pixel coordinates `(x, y)`, pixel
/// centres at whole numbers (as `grid_sample` with `align_corners=False`).
pub(crate) fn affine_source(
    m: &[f64; 6],
    (h, w): (usize, usize),
    (yo, xo): (usize, usize),
) -> (f64, f64) {
    let (half_w, half_h) = (w as f64 * 0.5, h as f64 * 0.5);
    let (x, y) = (xo as f64 - half_w + 0.5, yo as f64 - half_h + 0.5);
    (
        m[0] * x + m[1] * y + m[2] + half_w - 0.5,
        m[3] * x + m[4] * y + m[5] + half_h - 0.5,
    )
}

/// The output-to-input matrix torchvision's `_get_inverse_affine_matrix` builds, about the
/// image centre, in pixel units: `[a, b, c, d, e, f]` maps `(x, y)` to `(a x + b y + c,
/// d x + e y + f)`.
pub(crate) fn inverse_affine_matrix(
    angle: f64,
    (tx, ty): (f64, f64),
    scale: f64,
    (shear_x, shear_y): (f64, f64),
) -> [f64; 6] {
    let rot = angle.to_radians();
    let (sx, sy) = (shear_x.to_radians(), shear_y.to_radians());
    let a = (rot - sy).cos() / sy.cos();
    let b = -(rot - sy).cos() * sx.tan() / sy.cos() - rot.sin();
    let c = (rot - sy).sin() / sy.cos();
    let d = -(rot - sy).sin() * sx.tan() / sy.cos() + rot.cos();
    let mut m = [d / scale, -b / scale, 0.0, -c / scale, a / scale, 0.0];
    m[2] += m[0] * -tx + m[1] * -ty;
    m[5] += m[3] * -tx + m[4] * -ty;
    m
}
