//! Colour operations on `u8` images, computed as torchvision's v2 functional kernels compute
//! them on `uint8` tensors (float32 arithmetic, truncation back to `u8`), so results match to
//! the level.

use ndarray::Array3;

use crate::error::bad_image;
use crate::float::{floor_nonnegative, fraction};
use crate::simd::{Planes, RgbKernel, ValueKernel, map_rgb, map_values, sum_rgb};
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
#[inline(always)]
fn luma_of(r: f32, g: f32, b: f32) -> f32 {
    fused(b, LUMA[2], fused(g, LUMA[1], r * LUMA[0]))
}

/// [`luma_of`], floored: the gray level of torchvision's `uint8` grayscale.
#[inline(always)]
fn floored_luma_of(r: f32, g: f32, b: f32) -> f32 {
    floor_nonnegative(luma_of(r, g, b))
}

/// [`luma_of`] an RGB pixel.
fn luma(rgb: &[u8]) -> f32 {
    luma_of(f32::from(rgb[0]), f32::from(rgb[1]), f32::from(rgb[2]))
}

/// `a * b + c` rounded once, as a fused multiply-add: the product of two f32 values is exact in
/// f64. (`f32::mul_add` is a slow library call on CPUs built without FMA.)
#[inline(always)]
fn fused(a: f32, b: f32, c: f32) -> f32 {
    (f64::from(a) * f64::from(b) + f64::from(c)) as f32
}

/// `factor * x`, clamped: 0 gives black, 1 the image itself.
pub fn adjust_brightness(image: &Image, factor: f32) -> Result<Image> {
    check_channels("adjust_brightness", image, &[1, 3])?;
    Ok(map_image_values(image, Scale(factor)))
}

/// Blends the image with the mean of its luma: 0 gives flat grey, 1 the image itself.
pub fn adjust_contrast(image: &Image, factor: f32) -> Result<Image> {
    let c = check_channels("adjust_contrast", image, &[1, 3])?;
    let pixels = image.as_standard_layout();
    let flat = pixels.as_slice().expect("standard layout");
    let sum: f64 = if c == 3 {
        sum_rgb(flat, FlooredLuma)
    } else {
        flat.iter().map(|&v| f64::from(v)).sum()
    };
    let mean = (sum / (flat.len() / c) as f64) as f32;
    Ok(map_image_values(
        image,
        Blend {
            other: mean,
            ratio: factor,
        },
    ))
}

/// Blends the image with its luma: 0 gives grey, 1 the image itself. Gray images pass.
pub fn adjust_saturation(image: &Image, factor: f32) -> Result<Image> {
    if check_channels("adjust_saturation", image, &[1, 3])? == 1 {
        return Ok(image.clone());
    }
    Ok(map_image_rgb(image, Saturation(factor)))
}

/// A copy of the image with `kernel` applied to each value.
fn map_image_values(image: &Image, kernel: impl ValueKernel) -> Image {
    let mut out = image.as_standard_layout().into_owned();
    map_values(out.as_slice_mut().expect("standard layout"), kernel);
    out
}

/// A copy of an RGB image with `kernel` applied to each pixel.
fn map_image_rgb(image: &Image, kernel: impl RgbKernel) -> Image {
    let mut out = image.as_standard_layout().into_owned();
    map_rgb(out.as_slice_mut().expect("standard layout"), kernel);
    out
}

/// Brightness: `factor * v`.
struct Scale(f32);

impl ValueKernel for Scale {
    #[inline(always)]
    fn apply(&self, v: f32) -> f32 {
        v * self.0
    }
}

/// `ratio * v + (1 - ratio) * other`, as torchvision blends: `x * ratio`, then `other *
/// (1 - ratio)` added in one fused step.
struct Blend {
    other: f32,
    ratio: f32,
}

impl ValueKernel for Blend {
    #[inline(always)]
    fn apply(&self, v: f32) -> f32 {
        fused(self.other, 1.0 - self.ratio, v * self.ratio)
    }
}

/// Each pixel's luma, floored (torchvision's `uint8` grayscale), left in the red plane.
struct FlooredLuma;

impl RgbKernel for FlooredLuma {
    #[inline(always)]
    fn apply(&self, [r, g, b]: &mut Planes) {
        for i in 0..r.len() {
            r[i] = floored_luma_of(r[i], g[i], b[i]);
        }
    }
}

/// Saturation: each pixel blended with its own luma (floored, as torchvision's `uint8`
/// grayscale).
struct Saturation(f32);

impl RgbKernel for Saturation {
    #[inline(always)]
    fn apply(&self, [r, g, b]: &mut Planes) {
        for i in 0..r.len() {
            let blend = Blend {
                other: floored_luma_of(r[i], g[i], b[i]),
                ratio: self.0,
            };
            (r[i], g[i], b[i]) = (blend.apply(r[i]), blend.apply(g[i]), blend.apply(b[i]));
        }
    }
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
    Ok(map_image_rgb(image, Hue(shift)))
}

/// Hue rotation through HSV, written without branches (both sides computed, one chosen) so
/// that the compiler vectorises it; the arithmetic is Pillow's.
struct Hue(f32);

impl RgbKernel for Hue {
    #[inline(always)]
    fn apply(&self, [r, g, b]: &mut Planes) {
        for i in 0..r.len() {
            let (h, s, v) = rgb_to_hsv([r[i] / 255.0, g[i] / 255.0, b[i] / 255.0]);
            let h = fraction(h + self.0);
            // Pillow scales back by 255 + 1 - 1e-3 and truncates (`map_rgb` truncates).
            let [nr, ng, nb] = hsv_to_rgb(h, s, v);
            const SCALE: f32 = 255.0 + 1.0 - 1e-3;
            (r[i], g[i], b[i]) = (nr * SCALE, ng * SCALE, nb * SCALE);
        }
    }
}

/// Pillow's (and torchvision's) RGB -> HSV on values in `[0, 1]`; a gray pixel has hue and
/// saturation 0.
#[inline(always)]
fn rgb_to_hsv([r, g, b]: [f32; 3]) -> (f32, f32, f32) {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
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
    let h = fraction(h / 6.0 + 1.0);
    if maxc == minc {
        (0.0, 0.0, maxc)
    } else {
        (h, s, maxc)
    }
}

#[inline(always)]
fn hsv_to_rgb(h: f32, s: f32, v: f32) -> [f32; 3] {
    let h6 = h * 6.0;
    let i = floor_nonnegative(h6);
    let f = h6 - i;
    let p = (v * (1.0 - s)).clamp(0.0, 1.0);
    let q = (v * (1.0 - s * f)).clamp(0.0, 1.0);
    let t = (v * (1.0 - s + s * f)).clamp(0.0, 1.0);
    // Sector i of six: [v,t,p] [q,v,p] [p,v,t] [p,q,v] [t,p,v] [v,p,q].
    let i = if i >= 6.0 { i - 6.0 } else { i };
    let red = if i == 0.0 || i == 5.0 {
        v
    } else if i == 1.0 {
        q
    } else if i == 4.0 {
        t
    } else {
        p
    };
    let green = if i == 1.0 || i == 2.0 {
        v
    } else if i == 0.0 {
        t
    } else if i == 3.0 {
        q
    } else {
        p
    };
    let blue = if i == 3.0 || i == 4.0 {
        v
    } else if i == 2.0 {
        t
    } else if i == 5.0 {
        q
    } else {
        p
    };
    [red, green, blue]
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
        let gray = gray.as_standard_layout();
        let values = gray.as_slice().expect("standard layout");
        let rgb = values.iter().flat_map(|&v| [v, v, v]).collect();
        Array3::from_shape_vec((h, w, 3), rgb).expect("three values per pixel")
    })
}

/// Inverts every value at or above `threshold`.
pub fn solarize(image: &Image, threshold: u8) -> Result<Image> {
    check_channels("solarize", image, &[1, 2, 3, 4])?;
    Ok(image.mapv(|v| if v >= threshold { 255 - v } else { v }))
}
