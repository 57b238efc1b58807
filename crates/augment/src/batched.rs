//! The steps of many plans run on a whole batch at once, as tensor operations on the batch's
//! device (a GPU where there is one): [`apply_plans`].
//!
//! Values are kept as floats holding `u8` levels and each step rounds or truncates as its CPU
//! operation does, so a view made here differs from the CPU view of the same plan by at most
//! a level or two where the float arithmetic rounds differently. Two differences are by
//! design: resized crops sample bilinearly without antialiasing (equal to the CPU when the
//! crop is enlarged, which is the common case; aliased where it is shrunk, as Kornia's and
//! torchvision's tensor `grid_sample` paths are), and bicubic crops use `grid_sample`'s cubic
//! (a = -0.75) rather than Pillow's (a = -0.5).

use std::collections::BTreeMap;

use contrastive_tensor::{Kind, Tensor};

use crate::error::bad_image;
use crate::geometry::{affine_source, inverse_affine_matrix};
use crate::{Interpolation, Result, Sampling, Step, gaussian_kernel};

const OP: &str = "apply_plans";

/// ITU-R BT.601 luma weights (torchvision's).
const LUMA: [f64; 3] = [0.2989, 0.587, 0.114];

/// Runs `plans[i]` on image `i` of `batch` (`u8`, `[N, C, H, W]`, any device) and returns the
/// views as `u8` `[N, C, h, w]` on the same device.
///
/// Steps at the same position of different plans run together, grouped by kind; a step that
/// changes the size (a resized crop) must do so for every image at the same position and to
/// the same size, so that the views stay one batch.
///
/// ```
/// use contrastive_augment::{MultiViewPipeline, Transform, apply_plans, presets};
/// use contrastive_tensor::{Kind, Tensor};
/// use std::sync::Arc;
///
/// let batch = Tensor::randint(256, [4, 3, 32, 32], (Kind::Uint8, contrastive_tensor::Device::Cpu));
/// let view: Arc<dyn Transform> = Arc::new(presets::ViewRecipe::simclr(32, 1.0, true).build()?);
/// let pipeline = MultiViewPipeline::new(vec![view.clone(), view], 0);
/// let plans = pipeline.plans(&[(32, 32, 3); 4], &[0, 1, 2, 3], 0)?;
/// let first_views = apply_plans(&batch, &plans[0])?;
/// assert_eq!(first_views.size(), [4, 3, 32, 32]);
/// # Ok::<(), contrastive_augment::Error>(())
/// ```
pub fn apply_plans(batch: &Tensor, plans: &[Vec<Step>]) -> Result<Tensor> {
    let size = batch.size();
    if size.len() != 4 || batch.kind() != Kind::Uint8 {
        return Err(bad_image(
            OP,
            format!(
                "needs a u8 [N, C, H, W] batch, got {:?} of shape {size:?}",
                batch.kind()
            ),
        ));
    }
    if size[0] as usize != plans.len() {
        return Err(bad_image(
            OP,
            format!("{} images but {} plans", size[0], plans.len()),
        ));
    }
    if size.contains(&0) {
        return Err(bad_image(
            OP,
            format!("the batch is {size:?}: nothing to transform"),
        ));
    }
    let mut x = batch.to_kind(Kind::Float);
    let longest = plans.iter().map(Vec::len).max().unwrap_or(0);
    for position in 0..longest {
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, plan) in plans.iter().enumerate() {
            if let Some(step) = plan.get(position) {
                groups.entry(group_key(step)).or_default().push(i);
            }
        }
        for members in groups.values() {
            let steps: Vec<&Step> = members.iter().map(|&i| &plans[i][position]).collect();
            let everyone = members.len() == plans.len();
            let index = Tensor::from_slice(&members.iter().map(|&i| i as i64).collect::<Vec<_>>())
                .to_device(x.device());
            let part = if everyone {
                x.shallow_clone()
            } else {
                x.index_select(0, &index)
            };
            let done = run_group(&part, &steps)?;
            x = if everyone {
                done
            } else if done.size() == part.size() {
                x.index_copy(0, &index, &done)
            } else {
                return Err(bad_image(
                    OP,
                    format!(
                        "step {position} changes the size of only some images ({} of {}); \
                         views of one batch must keep one size",
                        members.len(),
                        plans.len()
                    ),
                ));
            };
        }
    }
    Ok(x.clamp(0.0, 255.0).to_kind(Kind::Uint8))
}

/// Steps that can run as one tensor operation share a key: the kind, and what must be equal
/// across the group (output size, kernel size, threshold, fill, sampling).
fn group_key(step: &Step) -> String {
    match step {
        Step::ResizedCrop {
            size,
            interpolation,
            ..
        } => format!("crop {size:?} {interpolation:?}"),
        Step::HorizontalFlip => "hflip".into(),
        Step::VerticalFlip => "vflip".into(),
        Step::Brightness(_) => "brightness".into(),
        Step::Contrast(_) => "contrast".into(),
        Step::Saturation(_) => "saturation".into(),
        Step::Hue(_) => "hue".into(),
        Step::Grayscale => "grayscale".into(),
        Step::Blur { kernel_size, .. } => format!("blur {kernel_size}"),
        Step::Solarize(threshold) => format!("solarize {threshold}"),
        Step::Rotate { fill, sampling, .. } | Step::Affine { fill, sampling, .. } => {
            format!("warp {fill:?} {sampling:?}")
        }
    }
}

/// One group's steps (all of one key) on its images `x` (float `[n, C, H, W]`).
fn run_group(x: &Tensor, steps: &[&Step]) -> Result<Tensor> {
    // Each image's factor or shift (colour steps), shaped to scale its image.
    let factors = || {
        Tensor::from_slice(&steps.iter().map(|s| scalar_of(s)).collect::<Vec<f32>>())
            .to_device(x.device())
            .view([-1, 1, 1, 1])
    };
    let channels = x.size()[1];
    Ok(match steps[0] {
        Step::ResizedCrop {
            size,
            interpolation,
            ..
        } => resized_crops(x, steps, *size, *interpolation),
        Step::HorizontalFlip => x.flip([3]),
        Step::VerticalFlip => x.flip([2]),
        Step::Brightness(_) => {
            let factor = factors();
            (x * factor).clamp(0.0, 255.0).floor()
        }
        Step::Contrast(_) => {
            check_channels("adjust_contrast", channels)?;
            let factor = factors();
            let gray = if channels == 3 {
                floored_luma(x)
            } else {
                x.shallow_clone()
            };
            // The mean in f64, as the CPU takes it.
            let mean = gray
                .to_kind(Kind::Double)
                .mean_dim([1i64, 2, 3].as_slice(), true, Kind::Double)
                .to_kind(Kind::Float);
            blend(x, &mean, &factor)
        }
        Step::Saturation(_) => {
            check_channels("adjust_saturation", channels)?;
            if channels == 1 {
                return Ok(x.shallow_clone());
            }
            let factor = factors();
            blend(x, &floored_luma(x), &factor)
        }
        Step::Hue(_) => {
            check_channels("adjust_hue", channels)?;
            if channels == 1 {
                return Ok(x.shallow_clone());
            }
            hue(x, &factors())
        }
        Step::Grayscale => {
            check_channels("to_grayscale", channels)?;
            if channels == 1 {
                return Ok(x.shallow_clone());
            }
            floored_luma(x).repeat([1, 3, 1, 1])
        }
        Step::Blur { kernel_size, .. } => blur(x, steps, *kernel_size)?,
        Step::Solarize(threshold) => {
            let t = f64::from(*threshold);
            (255.0f64 - x).where_self(&x.ge(t), x)
        }
        Step::Rotate { fill, sampling, .. } | Step::Affine { fill, sampling, .. } => {
            warp(x, steps, fill, *sampling)?
        }
    })
}

/// The factor or shift of a colour step.
fn scalar_of(step: &Step) -> f32 {
    match step {
        Step::Brightness(f) | Step::Contrast(f) | Step::Saturation(f) | Step::Hue(f) => *f,
        other => unreachable!("{other:?} has no scalar parameter"),
    }
}

/// Colour operations take 1 or 3 channels, as on the CPU.
fn check_channels(op: &'static str, channels: i64) -> Result<()> {
    if channels == 1 || channels == 3 {
        Ok(())
    } else {
        Err(bad_image(
            op,
            format!("needs [1, 3] channels, the image has {channels}"),
        ))
    }
}

/// `floor(0.2989 r + 0.587 g + 0.114 b)`, one channel.
fn floored_luma(x: &Tensor) -> Tensor {
    let weights = Tensor::from_slice(&LUMA.map(|w| w as f32))
        .to_device(x.device())
        .view([1, 3, 1, 1]);
    (x * weights).sum_dim_intlist(1, true, Kind::Float).floor()
}

/// `ratio * x + (1 - ratio) * other`, clamped and truncated to a level: `x * ratio` in f32,
/// then the other term added in one rounding (f64, as the CPU emulates torchvision's fused
/// multiply-add).
fn blend(x: &Tensor, other: &Tensor, ratio: &Tensor) -> Tensor {
    let scaled = (x * ratio).to_kind(Kind::Double);
    let rest = 1.0f64 - ratio;
    (other.to_kind(Kind::Double) * rest.to_kind(Kind::Double) + scaled)
        .to_kind(Kind::Float)
        .clamp(0.0, 255.0)
        .floor()
}

/// Hue rotation through HSV (Pillow's arithmetic, as the CPU's `adjust_hue`).
fn hue(x: &Tensor, shift: &Tensor) -> Tensor {
    let unit = x / 255.0;
    let (r, g, b) = (
        unit.narrow(1, 0, 1),
        unit.narrow(1, 1, 1),
        unit.narrow(1, 2, 1),
    );
    let maxc = r.maximum(&g).maximum(&b);
    let minc = r.minimum(&g).minimum(&b);
    let range = &maxc - &minc;
    let gray = range.eq(0.0);
    let safe_range = range.where_self(&gray.logical_not(), &range.ones_like());
    let safe_max = maxc.where_self(&gray.logical_not(), &maxc.ones_like());
    let s = (&range / &safe_max).where_self(&gray.logical_not(), &range.zeros_like());
    let (rc, gc, bc) = (
        (&maxc - &r) / &safe_range,
        (&maxc - &g) / &safe_range,
        (&maxc - &b) / &safe_range,
    );
    let h = (&bc - &gc).where_self(
        &maxc.eq_tensor(&r),
        &(2.0f64 + &rc - &bc).where_self(&maxc.eq_tensor(&g), &(4.0f64 + &gc - &rc)),
    );
    let h = (h / 6.0 + 1.0).remainder(1.0);
    let h = h.where_self(&gray.logical_not(), &h.zeros_like());
    let h = (h + shift).remainder(1.0);
    // Back to RGB: sector i of six picks among v, p, q, t.
    let v = maxc;
    let h6 = &h * 6.0;
    let i = h6.floor();
    let f = &h6 - &i;
    let i = i.remainder(6.0);
    let p = (&v * (1.0f64 - &s)).clamp(0.0, 1.0);
    let q = (&v * (1.0f64 - &s * &f)).clamp(0.0, 1.0);
    let t = (&v * (1.0f64 - &s + &s * &f)).clamp(0.0, 1.0);
    let pick = |table: [&Tensor; 6]| {
        let mut out = table[5].shallow_clone();
        for (sector, value) in table.iter().enumerate().take(5) {
            out = value.where_self(&i.eq(sector as f64), &out);
        }
        out
    };
    let red = pick([&v, &q, &p, &p, &t, &v]);
    let green = pick([&t, &v, &v, &q, &p, &p]);
    let blue = pick([&p, &p, &t, &v, &v, &q]);
    (Tensor::cat(&[red, green, blue], 1) * (255.0 + 1.0 - 1e-3)).floor()
}

/// Per-image crops resized to `size`, in two `grid_sample` passes as Pillow's separable
/// resize does (widths first, rounded to levels, then heights): the sampling points are those
/// of a bilinear resize of each crop, clamped to the crop's edges as resizing the cut-out crop
/// does, and the other axis is read at whole pixels.
fn resized_crops(
    x: &Tensor,
    steps: &[&Step],
    (out_h, out_w): (usize, usize),
    interpolation: Interpolation,
) -> Tensor {
    let [n, _, height, width] = x.size()[..] else {
        unreachable!("checked to be 4-D")
    };
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for step in steps {
        let Step::ResizedCrop {
            window: (top, left, h, w),
            ..
        } = step
        else {
            unreachable!("grouped with resized crops")
        };
        xs.extend(crop_axis(*left, *w, out_w, width));
        ys.extend(crop_axis(*top, *h, out_h, height));
    }
    let mode = match interpolation {
        Interpolation::Bilinear => 0,
        Interpolation::Bicubic => 2,
    };
    let device = x.device();
    let whole =
        |extent: i64| Tensor::from_slice(&crop_axis(0, extent as usize, extent as usize, extent));
    let (out_h, out_w) = (out_h as i64, out_w as i64);
    // Pass 1: every source row at the crops' column positions.
    let grid = Tensor::stack(
        &[
            Tensor::from_slice(&xs)
                .view([n, 1, out_w])
                .expand([n, height, out_w], false),
            whole(height)
                .view([1, height, 1])
                .expand([n, height, out_w], false),
        ],
        3,
    );
    let across = round_levels(&x.grid_sampler(&grid.to_device(device), mode, 1, false));
    // Pass 2: the crops' row positions, at whole columns of the first pass.
    let grid = Tensor::stack(
        &[
            whole(out_w)
                .view([1, 1, out_w])
                .expand([n, out_h, out_w], false),
            Tensor::from_slice(&ys)
                .view([n, out_h, 1])
                .expand([n, out_h, out_w], false),
        ],
        3,
    );
    round_levels(&across.grid_sampler(&grid.to_device(device), mode, 1, false))
}

/// For output pixels `0..out` of a crop `start..start + len` of an axis `extent` long: the
/// source position of each (align_corners = False), kept inside the crop, in grid_sample's
/// `[-1, 1]` coordinates.
fn crop_axis(start: usize, len: usize, out: usize, extent: i64) -> Vec<f32> {
    let scale = len as f64 / out as f64;
    (0..out)
        .map(|o| {
            let source = ((o as f64 + 0.5) * scale - 0.5).clamp(0.0, len as f64 - 1.0);
            ((2.0 * (start as f64 + source) + 1.0) / extent as f64 - 1.0) as f32
        })
        .collect()
}

/// Rounded to the nearest level (half up) and clamped to 0-255.
fn round_levels(x: &Tensor) -> Tensor {
    (x + 0.5).floor().clamp(0.0, 255.0)
}

/// Gaussian blur with each image's sigma: separable depthwise convolutions over reflect
/// padding, rounded to levels.
fn blur(x: &Tensor, steps: &[&Step], kernel_size: usize) -> Result<Tensor> {
    let [n, c, h, w] = x.size()[..] else {
        unreachable!("checked to be 4-D")
    };
    let half = (kernel_size / 2) as i64;
    if half >= h.min(w) {
        return Err(bad_image(
            "gaussian_blur",
            format!("kernel {kernel_size} is too large for a {h}x{w} image (reflect padding)"),
        ));
    }
    let weights: Vec<f32> = steps
        .iter()
        .flat_map(|step| match step {
            Step::Blur { sigma, .. } => gaussian_kernel(kernel_size, *sigma),
            other => unreachable!("{other:?} grouped with blurs"),
        })
        .collect();
    let k = kernel_size as i64;
    let kernels = Tensor::from_slice(&weights)
        .to_device(x.device())
        .view([n, 1, k])
        .repeat_interleave_self_int(c, 0, None::<i64>);
    let planes = x.reshape([1, n * c, h, w]);
    let across = planes.reflection_pad2d([half, half, 0, 0]).conv2d(
        &kernels.view([n * c, 1, 1, k]),
        None::<Tensor>,
        [1, 1],
        [0, 0],
        [1, 1],
        n * c,
    );
    let down = across.reflection_pad2d([0, 0, half, half]).conv2d(
        &kernels.view([n * c, 1, k, 1]),
        None::<Tensor>,
        [1, 1],
        [0, 0],
        [1, 1],
        n * c,
    );
    Ok(round_levels(&down.reshape([n, c, h, w])))
}

/// Rotations and affine warps about the centre, each image with its own matrix; uncovered
/// pixels take `fill`. A channel of ones sampled alongside gives the in-image weight, blended
/// with the fill as torchvision does.
fn warp(x: &Tensor, steps: &[&Step], fill: &[u8], sampling: Sampling) -> Result<Tensor> {
    let [n, c, h, w] = x.size()[..] else {
        unreachable!("checked to be 4-D")
    };
    if fill.len() != 1 && fill.len() as i64 != c {
        return Err(bad_image(
            "affine",
            format!("fill needs 1 or {c} values, got {}", fill.len()),
        ));
    }
    let mut grid = Vec::with_capacity((n * h * w * 2) as usize);
    for step in steps {
        let m = match step {
            Step::Rotate { angle, .. } => {
                inverse_affine_matrix(-angle, (0.0, 0.0), 1.0, (0.0, 0.0))
            }
            Step::Affine {
                angle,
                translate,
                scale,
                shear,
                ..
            } => {
                if !(scale.is_finite() && *scale > 0.0) {
                    return Err(bad_image(
                        "affine",
                        format!("scale must be > 0, got {scale}"),
                    ));
                }
                inverse_affine_matrix(*angle, *translate, *scale, *shear)
            }
            other => unreachable!("{other:?} grouped with warps"),
        };
        for yo in 0..h as usize {
            for xo in 0..w as usize {
                // Source pixel position, then grid_sample's coordinates.
                let (sx, sy) = affine_source(&m, (h as usize, w as usize), (yo, xo));
                grid.push(((2.0 * sx + 1.0) / w as f64 - 1.0) as f32);
                grid.push(((2.0 * sy + 1.0) / h as f64 - 1.0) as f32);
            }
        }
    }
    let grid = Tensor::from_slice(&grid)
        .to_device(x.device())
        .view([n, h, w, 2]);
    let with_mask = Tensor::cat(&[x.shallow_clone(), x.ones_like().narrow(1, 0, 1)], 1);
    let mode = match sampling {
        Sampling::Nearest => 1,
        Sampling::Bilinear => 0,
    };
    let sampled = with_mask.grid_sampler(&grid, mode, 0, false);
    let (values, mask) = (sampled.narrow(1, 0, c), sampled.narrow(1, c, 1));
    let fill: Vec<f32> = (0..c as usize)
        .map(|ch| f32::from(fill[ch.min(fill.len() - 1)]))
        .collect();
    let fill = Tensor::from_slice(&fill)
        .to_device(x.device())
        .view([1, c, 1, 1]);
    Ok((&mask * (values - &fill) + &fill).round().clamp(0.0, 255.0))
}
